"""TFRecord shards: write from videos and frame folders, read back decoded in-graph, resume, bad videos."""
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import tfrecord, tfrecord_writer
from keras_bert3d.data.tfrecord_writer import write_tfrecords
from keras_bert3d.data.jpeg_frames import encode_jpeg
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import frame_numbers, numbered_frames, write_video

HEIGHT, WIDTH = 48, 64
LENGTHS = (12, 16, 20)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three numbered videos (each frame shows its index) and their index."""
    root = tmp_path_factory.mktemp("videos")
    records = []
    for label, (n, ext) in enumerate(zip(LENGTHS, ("mp4", "avi", "mp4"))):
        path = str(root / f"v{label}.{ext}")
        write_video(path, numbered_frames(n, HEIGHT, WIDTH))
        records.append(VideoRecord(path, label, f"class{label}"))
    return VideoIndex(records, ["class0", "class1", "class2"])


def _read_all(pattern, **kwargs):
    return {ex["path"].numpy().decode(): ex for ex in tfrecord.read_tfrecords(pattern, **kwargs)}


def test_video_roundtrip_in_order(videos, tmp_path):
    manifest = write_tfrecords(videos, tmp_path, num_shards=2, workers=2, progress=False)
    names = [tfrecord.shard_name("train", k, 2) for k in range(2)]
    assert sorted(os.listdir(tmp_path)) == sorted(names + ["train-manifest.json"])
    assert names[0] == "train-00000-of-00002.tfrecord"
    on_disk = json.loads((tmp_path / "train-manifest.json").read_text())
    assert on_disk == manifest and manifest["bad"] == []
    assert sorted(v for s in manifest["shards"].values() for v in s["videos"]) == sorted(r.path for r in videos)
    examples = _read_all(str(tmp_path / "train-*.tfrecord"))
    assert len(examples) == len(videos)
    for record, n in zip(videos, LENGTHS):
        ex = examples[record.path]
        assert ex["frames"].shape == (n, HEIGHT, WIDTH, 3) and ex["frames"].dtype == tf.uint8
        assert int(ex["label"]) == record.label and int(ex["num_frames"]) == n
        assert ex["class"].numpy().decode() == record.class_name
        np.testing.assert_array_equal(frame_numbers(ex["frames"].numpy(), n), np.arange(n))


def test_resize_and_decode_only_sampled_indices(videos, tmp_path):
    size = [HEIGHT // 2, WIDTH // 2]
    write_tfrecords(videos, tmp_path, num_shards=1, frame_size=size, workers=1, progress=False)
    clip = 5

    def every_other(num_frames):  # a sampler in TF ops: frames 1, 3, 5, ... looping
        return (1 + 2 * tf.range(clip)) % num_frames

    examples = _read_all(tmp_path, indices_fn=every_other)  # a folder works as the pattern
    for record, n in zip(videos, LENGTHS):
        ex = examples[record.path]
        expected = (1 + 2 * np.arange(clip)) % n
        assert ex["frames"].shape == (clip, *size, 3)
        np.testing.assert_array_equal(ex["indices"].numpy(), expected)
        np.testing.assert_array_equal(frame_numbers(ex["frames"].numpy(), n), expected)
    # Undecoded: the JPEG strings, for sampling then `decode_frames` with a crop window.
    parsed = next(iter(tfrecord.read_tfrecords(tmp_path, decode=False)))
    assert parsed["frames"].dtype == tf.string and parsed["frames"].shape[0] == int(parsed["num_frames"])
    assert (int(parsed["height"]), int(parsed["width"])) == tuple(size)
    crop = tfrecord.decode_frames(parsed, [0, 1], crop=[2, 4, 8, 16])
    full = tfrecord.decode_frames(parsed, [0, 1])
    assert crop.shape == (2, 8, 16, 3)
    assert np.abs(crop.numpy().astype(int) - full.numpy()[:, 2:10, 4:20].astype(int)).max() <= 2


def test_bad_videos_are_skipped_with_reasons(videos, tmp_path):
    corrupt, empty = tmp_path / "corrupt.mp4", tmp_path / "empty.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    empty.write_bytes(b"")
    bad = [VideoRecord(str(corrupt), 0, "class0"), VideoRecord(str(empty), 1, "class1"),
           VideoRecord(str(tmp_path / "gone.mp4"), 2, "class2")]
    index = VideoIndex(list(videos) + bad, videos.class_names, missing=["listed/but/gone.avi"])
    out = tmp_path / "out"
    manifest = write_tfrecords(index, out, num_shards=2, workers=2, progress=False)
    reasons = {b["path"]: b["reason"] for b in manifest["bad"]}
    assert sorted(reasons) == sorted(r.path for r in bad)
    assert "empty" in reasons[str(empty)] and "missing" in reasons[str(tmp_path / "gone.mp4")]
    assert all(path in reason for path, reason in reasons.items())
    assert manifest["missing"] == ["listed/but/gone.avi"]
    assert sorted(_read_all(out)) == sorted(r.path for r in videos)


def test_resume_skips_complete_shards(videos, tmp_path):
    first = write_tfrecords(videos, tmp_path, num_shards=3, workers=1, progress=False)
    names = sorted(first["shards"])
    stamps = {name: os.stat(tmp_path / name).st_mtime_ns for name in names}
    os.remove(tmp_path / names[1])  # an interrupted run: one shard never renamed ...
    (tmp_path / (names[1] + ".tmp")).write_bytes(b"partial")  # ... its partial file left behind
    os.utime(tmp_path / names[0], ns=(1, 1))
    again = write_tfrecords(videos, tmp_path, workers=1, progress=False)  # num_shards from the manifest
    assert again["num_shards"] == 3 and sorted(again["shards"]) == names
    assert os.stat(tmp_path / names[0]).st_mtime_ns == 1  # kept, not rewritten
    assert os.stat(tmp_path / names[2]).st_mtime_ns == stamps[names[2]]
    assert sorted(os.listdir(tmp_path)) == sorted(names + ["train-manifest.json"])
    assert len(_read_all(tmp_path)) == len(videos)
    with pytest.raises(ValueError, match="other settings"):
        write_tfrecords(videos, tmp_path, jpeg_quality=50, workers=1, progress=False)


def test_auto_shard_count_and_progress(videos, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tfrecord_writer, "TARGET_SHARD_BYTES", 1)  # every video over the target: one shard each
    manifest = write_tfrecords(videos, tmp_path, workers=1, progress=True, prefix="test")
    assert manifest["num_shards"] == len(videos)
    err = capsys.readouterr().err  # tqdm's bar or the plain line
    assert "to-tfrecord test" in err and f"{len(videos)}/{len(videos)}" in err
    assert sorted(os.listdir(tmp_path))[0] == f"test-00000-of-{len(videos):05d}.tfrecord"


def test_frame_folders_rgb_bytes_kept_and_flow_two_channels(tmp_path):
    rng = np.random.default_rng(1)
    rgb_dir, flow_dir = tmp_path / "frames" / "a", tmp_path / "flow" / "a"
    rgb_dir.mkdir(parents=True)
    flow_dir.mkdir(parents=True)
    n = 6
    jpegs = [encode_jpeg(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)) for _ in range(n)]
    for i, data in enumerate(jpegs):
        (rgb_dir / f"img_{i + 1:05d}.jpg").write_bytes(data)
    levels = np.arange(n) * 40  # flow planes of constant values: x = level, y = 255 - level
    for i, level in enumerate(levels):  # HMDB51 style: no extension
        (flow_dir / f"flow_x_{i + 1:05d}").write_bytes(encode_jpeg(np.full((HEIGHT, WIDTH), level, np.uint8)))
        (flow_dir / f"flow_y_{i + 1:05d}").write_bytes(encode_jpeg(np.full((HEIGHT, WIDTH), 255 - level, np.uint8)))

    rgb = VideoIndex([VideoRecord(str(rgb_dir), 0, "a")], ["a"], source="frames")
    write_tfrecords(rgb, tmp_path / "rgb", workers=1, progress=False)
    parsed = next(iter(tfrecord.read_tfrecords(tmp_path / "rgb", decode=False)))
    assert [bytes(b) for b in parsed["frames"].numpy()] == jpegs  # the extracted JPEGs, byte for byte

    flow = VideoIndex([VideoRecord(str(flow_dir), 0, "a")], ["a"], source="frames")
    size = [HEIGHT // 2, WIDTH // 2]
    manifest = write_tfrecords(flow, tmp_path / "fl", frame_size=size, workers=1, progress=False)
    assert manifest["settings"]["modality"] == "flow"  # detected from the folder
    ex = next(iter(tfrecord.read_tfrecords(tmp_path / "fl", indices_fn=lambda num: tf.range(num)[::-1])))
    frames = ex["frames"].numpy().astype(int)
    assert frames.shape == (n, *size, 2)
    np.testing.assert_allclose(frames[..., 0].mean(axis=(1, 2)), levels[::-1], atol=2)
    np.testing.assert_allclose(frames[..., 1].mean(axis=(1, 2)), 255 - levels[::-1], atol=2)


def test_arguments_are_validated(videos, tmp_path):
    with pytest.raises(ValueError, match="num_shards"):
        write_tfrecords(videos, tmp_path, num_shards=4)
    with pytest.raises(ValueError, match=r"frame_size.*\[0, 5\]"):
        write_tfrecords(videos, tmp_path, frame_size=[0, 5])
    with pytest.raises(ValueError, match="bert3d flow"):
        write_tfrecords(videos, tmp_path, modality="flow")
    with pytest.raises(FileNotFoundError):
        tfrecord.read_tfrecords(tmp_path / "nothing-*.tfrecord")


def test_cli_to_tfrecord_from_ucf101_layout(tmp_path, capsys):
    from keras_bert3d.cli import to_tfrecord
    from keras_bert3d.data.synthetic import write_synthetic_dataset

    info = write_synthetic_dataset(tmp_path / "ucf", num_classes=2, videos_per_class=3, num_frames=16,
                                   size=(32, 24))
    args = types.SimpleNamespace(dataset="ucf101", root=str(tmp_path / "ucf"), out_dir=str(tmp_path / "out"),
                                 annotations=None, split=1, subset="train", modality=None,
                                 preset="rgb_r2plus1d_32f_34_bert10", frame_size=None, shards=None, workers=1,
                                 quality=90, no_progress=True)
    assert to_tfrecord.run(args) == 0
    assert "shards" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "train-manifest.json").read_text())
    assert manifest["settings"]["frame_size"] == [128, 170]  # the preset's frame size
    assert manifest["class_names"] == info["class_names"]
    ex = next(iter(tfrecord.read_tfrecords(tmp_path / "out")))
    assert ex["frames"].shape == (16, 128, 170, 3)
    assert to_tfrecord.parse_frame_size("256x340") == [256, 340]
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        to_tfrecord.parse_frame_size("256")


@pytest.mark.parametrize("workers,window", [(1, None), (2, 1), (2, 3)])
def test_ordered_map_keeps_task_order(workers, window):
    from keras_bert3d.data.parallel import ordered_map

    tasks = list(range(-6, 7))
    with ordered_map(abs, workers, window=window) as run:
        assert list(run(tasks)) == [abs(t) for t in tasks]
    with pytest.raises(ValueError, match="received workers=0"):
        with ordered_map(abs, 0):
            pass
