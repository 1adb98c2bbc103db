"""make_dataset on real small videos, frame folders and TFRecords: shapes, frames read, normalisation,
bad files skipped and counted, strict mode, determinism, mixup, the epoch report."""
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import sampling
from keras_bert3d.data.bad_videos import BadVideoCounter, reason_category
from keras_bert3d.data.jpeg_frames import encode_jpeg
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import write_video

LENGTHS = (20, 40, 9)  # frames of the good videos
GREY0, GREY_STEP = 8, 6  # frame i is a flat grey of value 8 + 6 i, so a clip tells which frames it holds
PREP = {"modality": "rgb", "num_frames": 8, "frame_size": [24, 32], "crop_size": 16,
        "scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
FLOW_PREP = dict(PREP, modality="flow", mean=[0.5, 0.5], std=[0.5, 0.5])


def grey_frames(n, height=48, width=64, channels=3):
    return np.full((n, height, width, channels), GREY0, np.uint8) + (GREY_STEP * np.arange(n, dtype=np.uint8))[
        :, None, None, None]


def frame_ids(clips, prep=PREP):
    """The frame index each normalised frame came from: (..., T)."""
    pixels = (clips * np.array(prep["std"]) + np.array(prep["mean"])) / prep["scale"]
    return np.round((pixels.mean(axis=(-1, -2, -3)) - GREY0) / GREY_STEP).astype(int)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = []
    for k, n in enumerate(LENGTHS):
        path = str(root / f"good{k}.{'avi' if k == 1 else 'mp4'}")
        write_video(path, grey_frames(n))
        good.append(VideoRecord(path, k % 2, f"c{k % 2}"))
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_bytes(b"this is not a video\n" * 20)
    data = open(good[1].path, "rb").read()
    (root / "truncated.avi").write_bytes(data[:len(data) // 3])
    bad = [VideoRecord(str(root / name), 0, "c0") for name in ("missing.mp4", "empty.mp4", "text.mp4")]
    bad.append(VideoRecord(good[0].path, 1, "c1", num_frames=200))  # index says 200 frames, file has 20
    return good, bad, str(root / "truncated.avi")


def index_of(records, source="video"):
    return VideoIndex(list(records), ["c0", "c1"], source=source)


def as_numpy(dataset):
    return [tuple(np.asarray(v) for v in element) for element in dataset]


def test_train_val_test_from_videos(videos):
    good, _, _ = videos
    index = index_of(good)
    size, length = PREP["crop_size"], PREP["num_frames"]
    low, high = (0 - 0.45) / 0.225, (1 - 0.45) / 0.225

    batches = as_numpy(make_dataset(index, PREP, "train", batch_size=2, seed=0).dataset)
    assert [b[0].shape for b in batches] == [(2, length, size, size, 3), (1, length, size, size, 3)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.int32 for b in batches)
    clips = np.concatenate([b[0] for b in batches])
    assert low - 1e-4 <= clips.min() and clips.max() <= high + 1e-4
    np.testing.assert_array_equal(np.diff(frame_ids(clips), axis=-1), 1)  # runs of consecutive frames

    val = as_numpy(make_dataset(index, PREP, "val", batch_size=2).dataset)
    ids = frame_ids(np.concatenate([b[0] for b in val]))
    for row, n in zip(ids, LENGTHS):  # no shuffle in val: index order
        np.testing.assert_array_equal(row, sampling.val_indices(n, length))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in val]), [r.label for r in good])

    test = as_numpy(make_dataset(index, PREP, "test", clips_per_video="cover", crops_per_clip=10).dataset)
    assert len(test) == len(good)
    for (views, label), record, n in zip(test, good, LENGTHS):
        clips_idx = sampling.cover_clips(n, length)
        assert views.shape == (10 * len(clips_idx), length, size, size, 3) and label == record.label
        np.testing.assert_array_equal(frame_ids(views)[:len(clips_idx)], clips_idx)  # crop-major views
        np.testing.assert_array_equal(frame_ids(views)[len(clips_idx):2 * len(clips_idx)], clips_idx)

    uniform, _ = make_dataset(index, PREP, "test", clips_per_video=2, crops_per_clip=3)
    assert uniform.element_spec[0].shape == (6, length, size, size, 3)


def test_bad_videos_are_skipped_and_counted(videos):
    good, bad, truncated = videos
    records = [good[0], *bad, VideoRecord(truncated, 0, "c0"), good[2]]
    counter = BadVideoCounter()
    dataset, bad_videos = make_dataset(index_of(records), PREP, "val", batch_size=8, counter=counter)
    assert bad_videos is counter
    (clips, labels), = as_numpy(dataset)
    assert clips.shape[0] == 2  # only the two good videos
    counts = counter.counts()
    assert counts.pop("missing") == 1 and counts.pop("empty") == 1 and counts.pop("too few frames") == 1
    assert sum(counts.values()) == 2 and set(counts) <= {"not a video", "truncated"}  # text file, cut-off file
    assert set(counter.files()) == {r.path for r in bad} | {truncated}
    as_numpy(dataset)  # a second epoch counts again
    assert counter.total == 10


def test_strict_raises_naming_the_file(videos):
    good, bad, _ = videos
    dataset, _ = make_dataset(index_of([good[0], bad[2]]), PREP, "val", batch_size=2, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="text.mp4"):
        as_numpy(dataset)


def test_seed_makes_training_reproducible(videos):
    good, _, _ = videos
    index = index_of(good)
    first = as_numpy(make_dataset(index, PREP, "train", batch_size=3, seed=5, num_parallel_calls=3).dataset)
    second = as_numpy(make_dataset(index, PREP, "train", batch_size=3, seed=5, num_parallel_calls=3).dataset)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    dataset, _ = make_dataset(index, PREP, "train", batch_size=3, seed=5)
    epochs = [as_numpy(dataset) for _ in range(3)]
    assert any(not np.array_equal(epochs[0][0][0], e[0][0]) for e in epochs[1:])  # new draws each epoch


def test_without_reshuffling_every_iteration_is_the_same(videos):
    """What training gives each epoch does not depend on how often its dataset was opened before (Keras'
    JAX fit opens it once more to build the model)."""
    good, _, _ = videos
    dataset, _ = make_dataset(index_of(good), PREP, "train", batch_size=3, seed=5, reshuffle_each_iteration=False)
    first, second = as_numpy(dataset), as_numpy(dataset)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other, _ = make_dataset(index_of(good), PREP, "train", batch_size=3, seed=6, reshuffle_each_iteration=False)
    other = as_numpy(other)
    assert not np.array_equal(first[0][0], other[0][0])  # the seed still draws


def write_frame_folder(folder, n, modality="rgb", ext=""):
    os.makedirs(folder, exist_ok=True)
    frames = grey_frames(n, 30, 40, 1)[..., 0]
    for i, frame in enumerate(frames, start=1):
        names = [f"img_{i:05d}.jpg"] if modality == "rgb" else [f"flow_x_{i:05d}{ext}", f"flow_y_{i:05d}{ext}"]
        for k, name in enumerate(names):
            image = np.stack([frame] * 3, -1) if modality == "rgb" else frame + k  # y a notch above x
            with open(os.path.join(folder, name), "wb") as f:
                f.write(encode_jpeg(image, quality=95))


def test_frame_folders_rgb_and_flow(tmp_path):
    rgb = [VideoRecord(str(tmp_path / "a"), 0, "c0", 12), VideoRecord(str(tmp_path / "b"), 1, "c1")]
    write_frame_folder(rgb[0].path, 12)
    write_frame_folder(rgb[1].path, 30)
    broken = VideoRecord(str(tmp_path / "broken"), 1, "c1", 12)
    write_frame_folder(broken.path, 12)
    os.remove(os.path.join(broken.path, "img_00006.jpg"))
    cut = VideoRecord(str(tmp_path / "cut"), 1, "c1", 12)
    write_frame_folder(cut.path, 12)
    data = open(os.path.join(cut.path, "img_00004.jpg"), "rb").read()
    open(os.path.join(cut.path, "img_00004.jpg"), "wb").write(data[:len(data) // 2])
    dataset, bad_videos = make_dataset(index_of([rgb[0], broken, cut, rgb[1]], "frames"), PREP, "val", batch_size=4)
    (clips, labels), = as_numpy(dataset)
    assert clips.shape == (2, 8, 16, 16, 3)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(frame_ids(clips), [sampling.val_indices(12, 8), sampling.val_indices(30, 8)])
    assert bad_videos.counts() == {"missing frame file": 1, "truncated frame file": 1}
    with pytest.raises(tf.errors.InvalidArgumentError, match="img_00006.jpg"):
        as_numpy(make_dataset(index_of([broken], "frames"), PREP, "val", strict=True).dataset)

    flow = [VideoRecord(str(tmp_path / "f"), 1, "c1", 15)]
    write_frame_folder(flow[0].path, 15, "flow", ext="")  # HMDB51 style: no extension
    clips, labels = next(iter(make_dataset(index_of(flow, "frames"), FLOW_PREP, "train", batch_size=1, seed=0).dataset))
    assert clips.shape == (1, 8, 16, 16, 2)
    pixels = (clips.numpy() * 0.5 + 0.5) * 255
    assert np.all(np.abs(pixels[..., 1] - pixels[..., 0] - 1) < 1.5)  # x and y kept apart, y not negated
    with pytest.raises(ValueError, match="flow"):
        make_dataset(index_of(flow), FLOW_PREP, "train", source="video")


def test_tfrecord_source(videos, tmp_path):
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    good, _, _ = videos
    write_tfrecords(index_of(good), tmp_path, num_shards=2, workers=1, progress=False, frame_size=[24, 32])
    val = as_numpy(make_dataset(str(tmp_path), PREP, "val", batch_size=8).dataset)
    (clips, labels), = val
    assert clips.shape == (3, 8, 16, 16, 3)
    by_label = sorted(zip(labels.tolist(), frame_ids(clips).tolist()))
    expected = sorted((r.label, sampling.val_indices(n, 8).tolist()) for r, n in zip(good, LENGTHS))
    assert by_label == expected
    train, _ = make_dataset(str(tmp_path / "*.tfrecord"), PREP, "train", batch_size=2, seed=1, mixup=0.2,
                            num_classes=2)
    clips, labels = next(iter(train))
    assert clips.shape == (2, 8, 16, 16, 3) and labels.shape == (2, 2)
    np.testing.assert_allclose(labels.numpy().sum(-1), 1.0, atol=1e-6)


def test_argument_errors(videos):
    index = index_of(videos[0])
    for kwargs, match in [(dict(mode="eval"), "mode='eval'"), (dict(batch_size=0), "batch_size=0"),
                          (dict(source="hdf5"), "source='hdf5'"), (dict(crops_per_clip=5), "crops_per_clip=5"),
                          (dict(clips_per_video="all"), "clips_per_video='all'"),
                          (dict(mode="val", mixup=0.2), "mixup=0.2")]:
        with pytest.raises(ValueError, match=match):
            make_dataset(index, PREP, **kwargs)
    with pytest.raises(ValueError, match="no videos"):
        make_dataset(index_of([]), PREP)
    with pytest.raises(ValueError, match="lacks"):
        make_dataset(index, {"modality": "rgb"})
    assert reason_category("x.mp4: has 20 frames, clip needs index 31") == "too few frames"


def test_synthetic_dataset_end_to_end(tmp_path):
    from keras_bert3d.data.indexes import ucf101_index
    from keras_bert3d.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, num_classes=2, videos_per_class=2, num_frames=24, size=(40, 32), seed=0)
    index = ucf101_index(str(tmp_path), split=1, subset="train")
    prep = dict(PREP, frame_size=[32, 40])
    clips, labels = next(iter(make_dataset(index, prep, "train", batch_size=len(index), seed=0).dataset))
    assert clips.shape == (len(index), 8, 16, 16, 3)
    assert sorted(labels.numpy().tolist()) == sorted(r.label for r in index)
