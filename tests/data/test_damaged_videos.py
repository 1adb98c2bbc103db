"""Videos that break mid-stream (corrupt packets after good ones, a cut tail): decoded up to the damage; the pipeline
uses that part when it holds enough frames, else skips and counts the video; strict mode names the file and frame."""
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import sampling
from keras_bert3d.data.bad_videos import BadVideoCounter
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import frame_numbers, numbered_frames, write_video
from keras_bert3d.data.video_reader import VideoDecodeError, count_decodable_frames, probe, read_frames

NUM_FRAMES = 60
PREP = {"modality": "rgb", "num_frames": 32, "frame_size": [48, 64], "crop_size": 48,
        "scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def noisy_numbered(num_frames):
    frames = numbered_frames(num_frames, 48, 64).astype(np.int16)
    noise = np.random.default_rng(0).integers(-20, 21, frames.shape)
    return np.clip(frames + noise, 0, 255).astype(np.uint8)


def with_garbage(data, at, size=3000):
    data = bytearray(data)
    start = int(len(data) * at)
    data[start:start + size] = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    return bytes(data)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    paths = {name: str(root / name) for name in ("good.avi", "corrupt.mp4", "cut.avi", "stub.avi")}
    write_video(paths["good.avi"], noisy_numbered(NUM_FRAMES), codec="mpeg4", gop_size=8)
    h264 = root / "h264.mp4"  # the index (moov) at the end, as most encoders write it
    write_video(h264, noisy_numbered(NUM_FRAMES), gop_size=8)
    with open(paths["corrupt.mp4"], "wb") as f:  # 3 kB of garbage 60 % into the frames: corrupt packets
        f.write(with_garbage(h264.read_bytes(), 0.6))
    data = open(paths["good.avi"], "rb").read()
    with open(paths["cut.avi"], "wb") as f:  # a cut tail (the AVI header still lists every frame)
        f.write(data[:int(len(data) * 0.75)])
    with open(paths["stub.avi"], "wb") as f:  # cut so early that little is left
        f.write(data[:int(len(data) * 0.4)])
    return paths


@pytest.mark.parametrize("name", ["corrupt.mp4", "cut.avi"])
def test_decodes_up_to_the_damage_and_names_the_frame(damaged, name):
    path = damaged[name]
    assert probe(path).num_frames == NUM_FRAMES  # the container still lists every frame
    usable = count_decodable_frames(path)
    assert NUM_FRAMES // 2 <= usable < NUM_FRAMES
    before = read_frames(path, np.arange(usable))
    np.testing.assert_array_equal(frame_numbers(before, NUM_FRAMES), np.arange(usable))  # the right frames
    with pytest.raises(VideoDecodeError, match=rf"{re.escape(name)}: damaged or cut at frame {usable} of the "
                                               rf"{NUM_FRAMES} it lists: frames 0-{usable - 1} decode") as info:
        read_frames(path, [0, NUM_FRAMES - 1])
    assert info.value.decodable == usable


def val_frames(dataset):
    return [frame_numbers(np.round(clip * 255).astype(np.uint8), NUM_FRAMES) for clips, _ in dataset
            for clip in clips.numpy()]


def test_the_pipeline_uses_the_part_before_the_damage_or_skips(damaged):
    records = [VideoRecord(damaged[name], 0, "c0") for name in ("good.avi", "corrupt.mp4", "cut.avi", "stub.avi")]
    counter = BadVideoCounter()
    # the centred clip of 60 frames, 14-45, reaches past both damages
    dataset, bad_videos = make_dataset(VideoIndex(records, ["c0"]), PREP, "val", batch_size=4, counter=counter)
    assert bad_videos is counter
    clips = val_frames(dataset)
    assert len(clips) == 3  # good, corrupt and cut used; stub skipped
    np.testing.assert_array_equal(clips[0], sampling.val_indices(NUM_FRAMES, 32))
    for clip, name in zip(clips[1:], ("corrupt.mp4", "cut.avi")):  # the centred clip of the decodable part
        usable = count_decodable_frames(damaged[name])
        assert usable <= 45 and clip.max() < usable
        np.testing.assert_array_equal(clip, sampling.val_indices(usable, 32))
    assert set(counter.damaged()) == {damaged["corrupt.mp4"], damaged["cut.avi"]}
    assert set(counter.files()) == {damaged["stub.avi"]} and counter.counts() == {"truncated": 1}
    assert "damaged or cut at frame" in counter.files()[damaged["stub.avi"]]


def test_strict_raises_naming_the_file_and_the_frame(damaged):
    usable = count_decodable_frames(damaged["corrupt.mp4"])
    dataset, _ = make_dataset(VideoIndex([VideoRecord(damaged["corrupt.mp4"], 0, "c0")], ["c0"]),
                              PREP, "val", batch_size=1, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"corrupt\.mp4: damaged or cut at frame {usable}"):
        list(dataset)
