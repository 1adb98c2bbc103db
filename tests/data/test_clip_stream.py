"""The test protocol streamed clip by clip (issue 22): `stream_clips` holds a clip's frames, not the video's;
``make_dataset(mode="test", test_elements="clip")`` gives the views of ``test_elements="video"`` a clip at a time,
before the video is decoded to its end; damaged and bad videos as in the per-video mode; the pixel cap names the
file. (`tests/training/test_evaluate_memory.py` measures a 3000-frame 720p video.)"""
import time
import weakref

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import sampling, video_reader
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import frame_numbers, numbered_frames, write_video
from keras_bert3d.data.video_container import MAX_FRAME_PIXELS, MAX_FRAME_PIXELS_ENV, frame_pixel_cap, open_video
from keras_bert3d.data.video_reader import VideoDecodeError, probe, read_frames, stream_clips
from keras_bert3d.training.streams import predict_videos

PREP = {"modality": "rgb", "num_frames": 8, "frame_size": [24, 32], "crop_size": 16,
        "scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
LONG = 400  # frames of the long video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_stream")
    paths = {"long": str(root / "long.avi"), "short": str(root / "short.mp4"), "tiny": str(root / "tiny.avi")}
    write_video(paths["long"], numbered_frames(LONG, 48, 64), codec="mpeg4", gop_size=12)
    write_video(paths["short"], numbered_frames(30, 48, 64))
    write_video(paths["tiny"], numbered_frames(5, 48, 64), codec="mpeg4")  # shorter than a clip: loops
    data = open(paths["long"], "rb").read()
    paths["cut"] = str(root / "cut.avi")  # a cut tail: the part before holds most of the video
    with open(paths["cut"], "wb") as f:
        f.write(data[:int(len(data) * 0.8)])
    return paths


def test_stream_clips_gives_read_frames_clips_holding_one_clip(videos):
    clips = sampling.eval_clips(LONG, 8, "cover")
    decoded = []  # weak references to the frames the stream keeps: alive while it holds them

    def keep(pixels):
        pixels = pixels.copy()
        decoded.append(weakref.ref(pixels))
        return pixels

    most = 0
    for k, frames in stream_clips(videos["long"], clips, keep):
        most = max(most, sum(ref() is not None for ref in decoded))
        np.testing.assert_array_equal(frames, read_frames(videos["long"], clips[k]))
        np.testing.assert_array_equal(frame_numbers(frames, LONG), clips[k])
    assert k == len(clips) - 1 and len(clips) > 40
    assert most <= 8  # a clip's frames, whatever the video's length
    looped = sampling.eval_clips(5, 8, 3)  # a video shorter than a clip: every clip loops over it
    assert [f.shape for _, f in stream_clips(videos["tiny"], looped)] == [(8, 48, 64, 3)] * 3


def _views_by_video(dataset):
    """``test_elements="clip"`` elements -> {video: (label, views in crop-major order)}."""
    views, found = {}, {}
    for clip_views, label, keys in dataset:
        for view, (video, attempt, place, total) in zip(clip_views.numpy(), keys.numpy().tolist()):
            views.setdefault((video, attempt), {})[place] = view
            found[video, attempt] = (int(label), total)
    out = {}
    for (video, attempt), (label, total) in sorted(found.items()):
        if len(views[video, attempt]) == total:
            out[video] = (label, np.stack([views[video, attempt][p] for p in range(total)]))
    return out


@pytest.mark.parametrize("clips,crops", [("cover", 10), (3, 3), ("center", 1)])
def test_clip_elements_are_the_video_elements_a_clip_at_a_time(videos, clips, crops):
    records = [VideoRecord(videos[name], k % 2, f"c{k % 2}") for k, name in enumerate(("short", "long", "tiny"))]
    index = VideoIndex(records, ["c0", "c1"])
    whole = list(make_dataset(index, PREP, "test", clips_per_video=clips, crops_per_clip=crops).dataset)
    streamed = _views_by_video(make_dataset(index, PREP, "test", clips_per_video=clips, crops_per_clip=crops,
                                            test_elements="clip").dataset)
    assert sorted(streamed) == [0, 1, 2]
    for video, (views, label) in enumerate(whole):
        assert streamed[video][0] == int(label)
        np.testing.assert_array_equal(streamed[video][1], views.numpy())


def test_the_stream_gives_clips_before_the_video_is_decoded(videos, monkeypatch):
    decoded = []
    monkeypatch.setattr(video_reader, "_frame_hook", lambda path, position: decoded.append(position))
    index = VideoIndex([VideoRecord(videos["long"], 0, "c0")], ["c0"])
    stream = iter(make_dataset(index, PREP, "test", clips_per_video="cover", crops_per_clip=10,
                               test_elements="clip").dataset)
    views, label, keys = next(stream)
    assert views.shape == (10, 8, 16, 16, 3) and keys.numpy()[0, 2] == 0
    time.sleep(1.0)  # the buffers between the decoder and this consumer are full: decoding waits
    assert max(decoded) < LONG // 2, f"the stream decoded {max(decoded) + 1} of {LONG} frames ahead of its consumer"
    assert sum(1 for _ in stream) == len(sampling.cover_clips(LONG, 8)) - 1


def test_a_damaged_video_streams_the_part_before_the_damage(videos):
    index = VideoIndex([VideoRecord(videos["cut"], 1, "c1"), VideoRecord(videos["short"], 0, "c0")], ["c0", "c1"])
    whole = make_dataset(index, PREP, "test", clips_per_video="cover", crops_per_clip=1)
    expected = [views.numpy() for views, _ in whole.dataset]
    streamed = make_dataset(index, PREP, "test", clips_per_video="cover", crops_per_clip=1, test_elements="clip")
    found = _views_by_video(streamed.dataset)
    assert [np.array_equal(found[k][1], expected[k]) for k in range(2)] == [True, True]
    assert list(streamed.bad_videos.damaged()) == [videos["cut"]] and not streamed.bad_videos.files()


def test_predict_videos_averages_streamed_views_in_crop_major_order(videos):
    import keras

    index = VideoIndex([VideoRecord(videos[n], k, f"c{k}") for k, n in enumerate(("short", "long"))], ["c0", "c1"])
    inputs = keras.Input((8, 16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling3D()(inputs)))
    per_video = predict_videos(model, make_dataset(index, PREP, "test", clips_per_video="cover").dataset, 7,
                               progress=False)
    per_clip = predict_videos(model, make_dataset(index, PREP, "test", clips_per_video="cover",
                                                  test_elements="clip").dataset, 7, progress=False)
    for a, b in zip(per_video, per_clip):
        np.testing.assert_array_equal(a, b)
    assert per_clip[2].tolist() == [10 * len(sampling.cover_clips(n, 8)) for n in (30, LONG)]


def test_frames_over_the_pixel_cap_are_refused_naming_the_file(videos, monkeypatch):
    assert frame_pixel_cap() == MAX_FRAME_PIXELS == 7680 * 4320
    with pytest.raises(VideoDecodeError, match=r"short\.mp4: frames of 64x48 pixels are over the pixel cap of 3000"):
        open_video(videos["short"], max_pixels=3000)
    monkeypatch.setenv(MAX_FRAME_PIXELS_ENV, "3000")
    for call in (lambda: probe(videos["short"]), lambda: read_frames(videos["short"], [0]),
                 lambda: next(stream_clips(videos["short"], [[0, 1]]))):
        with pytest.raises(VideoDecodeError, match=r"short\.mp4: .*over the pixel cap of 3000"):
            call()
    index = VideoIndex([VideoRecord(videos["short"], 0, "c0"), VideoRecord(videos["tiny"], 0, "c0")], ["c0"])
    monkeypatch.setenv(MAX_FRAME_PIXELS_ENV, "3072")  # exactly 64x48: allowed
    assert len(list(make_dataset(index, PREP, "test", test_elements="clip").dataset)) == 2
    monkeypatch.setenv(MAX_FRAME_PIXELS_ENV, "3071")
    pipeline = make_dataset(index, PREP, "test", test_elements="clip")
    assert list(pipeline.dataset) == [] and len(pipeline.bad_videos.files()) == 2  # skipped and counted
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"short\.mp4: .*pixel cap"):
        list(make_dataset(index, PREP, "test", test_elements="clip", strict=True).dataset)
    monkeypatch.setenv(MAX_FRAME_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="positive int"):
        frame_pixel_cap()



def test_tfrecord_clip_elements_are_its_video_elements(videos, tmp_path):
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    index = VideoIndex([VideoRecord(videos[n], k, f"c{k}") for k, n in enumerate(("short", "long"))], ["c0", "c1"])
    write_tfrecords(index, tmp_path, num_shards=1, workers=1, progress=False)
    shards = str(tmp_path / "*.tfrecord")
    whole = [views.numpy() for views, _ in make_dataset(shards, PREP, "test", clips_per_video="cover").dataset]
    streamed = _views_by_video(make_dataset(shards, PREP, "test", clips_per_video="cover",
                                            test_elements="clip").dataset)
    assert len(whole) == len(streamed) == 2
    for video, views in enumerate(whole):
        np.testing.assert_array_equal(streamed[video][1], views)
