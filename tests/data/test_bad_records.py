"""Bad input is skipped, counted and named everywhere (issue 22 item 3): whatever a decoder raises in a worker
pool (a PIL decompression bomb, cv2.error), records lost from a damaged TFRecord shard, a corrupt JPEG inside a
TFRecord example or a frame folder, and a `%` in a frame folder's path."""
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import check, flow, parallel, tfrecord
from keras_bert3d.data.frame_folders import count_frames, file_templates, frame_files
from keras_bert3d.data.indexes.reference_frames import reference_frames_index
from keras_bert3d.data.jpeg_frames import encode_jpeg
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.tfrecord_writer import write_tfrecords

PREP = {"modality": "rgb", "num_frames": 4, "frame_size": [16, 16], "crop_size": 16,
        "scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
FRAMES = 6


def _bomb_jpeg():
    """A real JPEG whose header says 60000 x 60000 pixels: PIL refuses it (DecompressionBombError)."""
    data = bytearray(encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")  # baseline frame header: marker, length (2), precision (1), height, width
    data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(data)


def _frame_folder(path, frames=None):
    path.mkdir(parents=True)
    frames = frames or [encode_jpeg(np.full((16, 16, 3), 10 * i, np.uint8)) for i in range(FRAMES)]
    for i, data in enumerate(frames):
        (path / f"img_{i + 1:05d}.jpg").write_bytes(data)
    return str(path)


@pytest.fixture
def folders(tmp_path):
    """Three frame folders: one with a `%` in its name, one whose first frame is a decompression bomb."""
    good = _frame_folder(tmp_path / "frames" / "v_50%_off %d %s")
    plain = _frame_folder(tmp_path / "frames" / "v_plain")
    black = encode_jpeg(np.zeros((16, 16, 3), np.uint8))
    bomb = _frame_folder(tmp_path / "frames" / "v_bomb", [_bomb_jpeg()] + [black] * (FRAMES - 1))
    return good, plain, bomb


def test_percent_in_a_frame_folder_path(folders):
    good = folders[0]
    assert count_frames(good) == FRAMES
    paths = frame_files(good, [0, 5, 2])
    assert [os.path.basename(p) for p in paths] == ["img_00001.jpg", "img_00006.jpg", "img_00003.jpg"]
    assert all(os.path.dirname(p) == good and os.path.isfile(p) for p in paths)
    assert file_templates(good)[0] % 7 == os.path.join(good, "img_00007.jpg")
    split_file = os.path.join(os.path.dirname(good), "train_rgb_split1.txt")
    with open(split_file, "w", encoding="utf-8") as f:
        f.write(f"{os.path.basename(good)} {FRAMES} 0\n")
    index = reference_frames_index(os.path.dirname(good), split_file)  # the reference's split-file layout
    assert [r.path for r in index] == [good] and not index.missing
    pipeline = make_dataset(index, PREP, "val", batch_size=1)
    clips, labels = next(iter(pipeline.dataset))
    assert clips.shape == (1, 4, 16, 16, 3) and pipeline.bad_videos.total == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_to_tfrecord_skips_a_decompression_bomb_and_names_it(folders, tmp_path, workers):
    index = VideoIndex([VideoRecord(f, k, "abc"[k]) for k, f in enumerate(folders)], ["a", "b", "c"], source="frames")
    manifest = write_tfrecords(index, tmp_path / "out", num_shards=1, frame_size=[16, 16], workers=workers,
                               progress=False)
    assert [bad["path"] for bad in manifest["bad"]] == [folders[2]]
    assert "DecompressionBombError" in manifest["bad"][0]["reason"]
    assert sorted(manifest["shards"]["train-00000-of-00001.tfrecord"]["videos"]) == sorted(folders[:2])


def _raise_for(task):
    if task == "bomb":
        from PIL import Image

        raise Image.DecompressionBombError("Image size (3600000000 pixels) exceeds limit")
    if task == "memory":
        raise MemoryError("out of memory")
    return {"ok": task}


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_pool_skips_what_a_decoder_raises(workers):
    with parallel.ordered_map(_raise_for, workers, skip_errors=True) as run:
        results = list(run(["a", "bomb", "b"]))
    assert results[0] == {"ok": "a"} and results[2] == {"ok": "b"}
    assert results[1] == {"error": "cannot decode (DecompressionBombError: Image size (3600000000 pixels) "
                                   "exceeds limit)"}
    with pytest.raises(MemoryError), parallel.ordered_map(_raise_for, workers, skip_errors=True) as run:
        list(run(["a", "memory"]))


def test_flow_worker_skips_a_cv2_error(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (videos / name).write_bytes(b"")

    def extract(path, out_folder, **options):
        if path.endswith("a.mp4"):
            raise cv2.error("OpenCV(4.8) error: (-215:Assertion failed) !_src.empty()")
        os.makedirs(out_folder)
        return 3

    monkeypatch.setattr(flow, "extract_flow", extract)
    report = flow.extract_flow_dataset(videos, tmp_path / "out", workers=1, progress=False)
    assert report["written"] == ["b"]
    assert [bad["path"] for bad in report["bad"]] == [str(videos / "a.mp4")]
    assert "cannot decode (error: OpenCV" in report["bad"][0]["reason"]


def test_check_videos_names_what_a_frame_folder_raises(folders, monkeypatch):
    def broken(record, min_frames):
        raise PermissionError(13, "Permission denied", os.path.join(record.path, "img_00001.jpg"))

    monkeypatch.setattr(check, "_check_frames", broken)
    report = check.check_videos([folders[1]], workers=2)
    assert report["checked"] == 1 and "Permission denied" in report["bad"][0]["reason"]
    assert report["bad"][0]["path"] == folders[1]


def _write_shard(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, frames in examples:
            context = {"label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
                       "class": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a"])),
                       "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
                       "num_frames": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(frames)])),
                       "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[16])),
                       "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[16])),
                       "modality": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"rgb"]))}
            lists = {"frames": tf.train.FeatureList(feature=[tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[jpeg])) for jpeg in frames])}
            example = tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                               feature_lists=tf.train.FeatureLists(feature_list=lists))
            writer.write(example.SerializeToString())


def _good_frames():
    return [encode_jpeg(np.full((16, 16, 3), 10 * i, np.uint8)) for i in range(FRAMES)]


def test_truncated_tfrecord_shard_counted_and_named(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    _write_shard(shards / "train-00000-of-00002.tfrecord", [(f"v{k}", _good_frames()) for k in range(3)])
    cut = shards / "train-00001-of-00002.tfrecord"
    _write_shard(cut, [(f"w{k}", _good_frames()) for k in range(3)])
    size = os.path.getsize(cut)
    with open(cut, "r+b") as f:
        f.truncate(size - 100)  # the last record cut short
    pipeline = make_dataset(str(shards), PREP, "test", clips_per_video="center", crops_per_clip=1)
    labels = [int(label) for _, label in pipeline.dataset]
    assert len(labels) == 5  # every whole record is read
    files = pipeline.bad_videos.files()
    assert list(files) == [f"{cut}#record2"]
    assert f"corrupt or cut at byte {size * 2 // 3}" in files[f"{cut}#record2"]
    assert pipeline.bad_videos.counts() == {"damaged TFRecord": 1}
    _write_shard(cut, [(f"w{k}", _good_frames()) for k in range(3)])
    with open(cut, "r+b") as f:  # a flipped byte inside the second record: it and the third are lost, both named
        f.seek(size // 3 + 200)
        byte = f.read(1)
        f.seek(size // 3 + 200)
        f.write(bytes([byte[0] ^ 1]))
    pipeline = make_dataset(str(shards), PREP, "test", clips_per_video="center", crops_per_clip=1)
    assert len(list(pipeline.dataset)) == 4
    assert sorted(pipeline.bad_videos.files()) == [f"{cut}#record1", f"{cut}#record2"]


def test_corrupt_jpeg_inside_a_tfrecord_counted_and_named(tmp_path):
    broken = _good_frames()
    broken[2] = broken[2][:20] + b"\x00" * 40 + broken[2][60:-2]  # a JPEG header, then garbage and no end
    _write_shard(tmp_path / "train-00000-of-00001.tfrecord", [("good0", _good_frames()), ("broken", broken),
                                                              ("good1", _good_frames())])
    pipeline = make_dataset(str(tmp_path), PREP, "test", clips_per_video="center", crops_per_clip=1)
    assert len(list(pipeline.dataset)) == 2
    assert list(pipeline.bad_videos.files()) == ["broken"]
    assert pipeline.bad_videos.counts() == {"corrupt frame data": 1}


def test_lost_records_walks_the_length_headers(tmp_path):
    from keras_bert3d.data.dropped_records import lost_records

    path = tmp_path / "s.tfrecord"
    _write_shard(path, [(f"v{k}", _good_frames()) for k in range(4)])
    assert tfrecord.list_shards(str(path)) == [str(path)]
    record = os.path.getsize(path) // 4
    assert lost_records(str(path), 0) == 4 and lost_records(str(path), record) == 3
    assert lost_records(str(path), 3 * record + 5) >= 1


def test_corrupt_jpeg_in_a_frame_folder_counted_and_named(tmp_path):
    frames = _good_frames()
    frames[1] = frames[1][:20] + b"\x00" * 40 + frames[1][60:]  # header and end marker kept: only decoding fails
    broken = _frame_folder(tmp_path / "broken", frames)
    good = _frame_folder(tmp_path / "good")
    index = VideoIndex([VideoRecord(broken, 0, "a"), VideoRecord(good, 0, "a")], ["a"], source="frames")
    pipeline = make_dataset(index, PREP, "test", clips_per_video="center", crops_per_clip=1)
    assert len(list(pipeline.dataset)) == 1
    assert pipeline.bad_videos.files() == {broken: "corrupt frame file (a JPEG that will not decode)"}


def _reader_raising(err):
    def read_frames(path, indices):
        raise err

    return read_frames


def test_pipeline_skips_any_decoder_error_but_not_memory_error(monkeypatch):
    from keras_bert3d.data import video_sources
    from keras_bert3d.data.bad_videos import BadVideoCounter

    plan = video_sources.ClipPlan("val", 4, 1, False, "center", "rgb", False, BadVideoCounter())
    monkeypatch.setattr(video_sources, "read_frames", _reader_raising(RuntimeError("av: Invalid data found")))
    frames, ok = plan.video(b"/videos/a.mp4", -1, 0)
    assert not ok and frames.shape[0] == 0
    assert plan.counter.files() == {"/videos/a.mp4": "cannot be read (RuntimeError: av: Invalid data found)"}
    monkeypatch.setattr(video_sources, "read_frames", _reader_raising(MemoryError()))
    with pytest.raises(MemoryError):
        plan.video(b"/videos/b.mp4", -1, 0)
