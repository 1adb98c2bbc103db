"""The test protocol's clips, streamed: a long video is decoded, resized and handed on clip by clip.

`make_dataset(mode="test")` (keras_bert3d.data.pipeline) gives every view of a video: cover x 10 crops of a
100-second video is about a thousand views. Decoding them all first held every frame of the video at full size
(16 GiB for 3000 frames of 1280x720). Here each video's clips come from one forward pass of the decoder
(`keras_bert3d.data.video_reader.stream_clips`), each frame resized to the preset's ``frame_size`` as it decodes
(`transforms.resize`, the pipeline's own rule: PyAV's scaler is not used because its bilinear filter gives other
pixels), and a frame is dropped once the clips that need it are handed on.

- `clip_elements`: ``elements="clip"``, one dataset element per clip: ``(frames (T, H, W, C), label, seed,
  position)``; ``position`` is int64 ``[video, attempt, clip, clips]`` (see `clip_positions`). Memory holds a few
  clips per video being decoded, whatever the videos' length.
- `video_frames`: ``elements="video"``, the whole video's clips at ``frame_size`` (what a one-element-per-video
  test set needs), resized at decode time too.

A video that breaks mid-stream after some of its clips went out is decoded again from the part before the damage
(when it holds a clip and half its frames), as `ClipPlan.video` does: those clips carry the next ``attempt``,
and a consumer keeps, per video, the highest attempt whose clips all arrived (an attempt that stops short was
skipped and counted).
"""
import os

import numpy as np
import tensorflow as tf

from keras_bert3d.data import sampling, transforms
from keras_bert3d.data.video_reader import VideoDecodeError, probe, stream_clips
from keras_bert3d.data.video_sources import DAMAGED_MIN_FRACTION, load_frames, video_records

TEST_ELEMENTS = ("video", "clip")
# Videos decoded at once in ``elements="clip"`` mode when ``num_parallel_calls`` is AUTOTUNE: the cores, up to this
# many (each holds about a clip of resized frames, plus the two clips waiting in its buffer).
MAX_STREAM_CYCLE = 8


def stream_cycle(calls):
    """Videos decoded at once: ``calls`` when it is a count, else the cores up to `MAX_STREAM_CYCLE`."""
    if isinstance(calls, int) and calls > 0:
        return calls
    return max(1, min(os.cpu_count() or 1, MAX_STREAM_CYCLE))


def _resizer(frame_size):
    size = [int(v) for v in frame_size]
    return lambda pixels: transforms.resize(tf.constant(pixels), size).numpy()


def _plan_clips(plan, num_frames, seed):
    return plan.indices(num_frames, seed).reshape(-1, plan.clip_len)


def video_clips(plan, path, num_frames, seed, frame_size):
    """Yields ``(attempt, k, clips, frames (T, H, W, 3) uint8 at frame_size)`` for the test clips of one video;
    bad input is skipped and counted in ``plan.counter`` (or raised with ``plan.strict``)."""
    resize = _resizer(frame_size)
    attempt = 0
    try:
        num_frames = int(num_frames) if num_frames > 0 else probe(path).num_frames
        rows = _plan_clips(plan, num_frames, seed)
        try:
            for k, frames in stream_clips(path, rows, resize):
                yield attempt, k, len(rows), frames
            return
        except VideoDecodeError as err:  # broken mid-stream: the part before the damage, if it holds a clip
            enough = max(sampling.clip_span(plan.clip_len, plan.stride), DAMAGED_MIN_FRACTION * num_frames)
            if plan.strict or (err.decodable or 0) < enough:
                raise
            plan.counter.note_damaged(path, err.reason)
            rows, attempt = _plan_clips(plan, err.decodable, seed), attempt + 1
            for k, frames in stream_clips(path, rows, resize):
                yield attempt, k, len(rows), frames
    except Exception as err:  # VideoDecodeError, or anything else PyAV raises: never stop the evaluation
        plan.skip(path, err, None)


def video_frames(plan, path, num_frames, seed, frame_size):
    """The frames of every test clip of one video, ``(K * T, H, W, 3)`` uint8 at ``frame_size`` in clip order
    (what `ClipPlan.video` gives, resized), and whether the video was usable."""
    path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
    clips, count, last = {}, 0, -1
    for attempt, k, count, frames in video_clips(plan, path, int(num_frames), seed, frame_size):
        if attempt != last:
            clips, last = {}, attempt  # a new attempt starts again
        clips[k] = frames
    if not clips or len(clips) != count:  # skipped (counted), maybe after some clips
        return np.zeros((0, *frame_size, 3), np.uint8), False
    return np.concatenate([clips[k] for k in range(count)]), True


def clip_elements(records, seeds, plan, frame_size, calls):
    """``(frames (T, H, W, 3) uint8, label, seed, position [video, attempt, clip, clips] int64)`` per clip of
    every usable video of ``records`` (a dataset of ``(path, label, num_frames)``), `stream_cycle` video files
    decoded at a time; clips of different videos interleave (``position`` says whose they are)."""
    size = [int(v) for v in frame_size]
    signature = (tf.TensorSpec([plan.clip_len, *size, 3], tf.uint8), tf.TensorSpec([4], tf.int64))

    def generate(path, num_frames, seed, video):
        for attempt, k, count, frames in video_clips(plan, path.decode("utf-8"), int(num_frames), seed, size):
            yield frames, np.array([video, attempt, k, count], np.int64)

    def one_video(video, record, elem_seed):
        path, label, num_frames = record
        clips = tf.data.Dataset.from_generator(generate, output_signature=signature,
                                               args=(path, num_frames, elem_seed, video))
        return clips.map(lambda frames, position: (frames, label, elem_seed, position))

    videos = tf.data.Dataset.zip(records, seeds).enumerate()
    cycle = stream_cycle(calls)
    return videos.interleave(lambda video, pair: one_video(video, *pair), cycle_length=cycle, block_length=1,
                             num_parallel_calls=cycle, deterministic=True)


def test_frames(index, source, plan, seeds, frame_size, shuffle, seed, reshuffle, calls, deterministic,
                elements="video"):
    """The test mode's `load_frames`: ``(frames, label, seed)`` per video (``elements="video"``), or
    ``(frames, label, seed, position)`` per clip (``"clip"``); video files are resized at decode time."""
    size = [int(v) for v in frame_size]
    if source != "video":
        dataset = load_frames(index, source, plan, seeds, size, shuffle, seed, reshuffle, calls, deterministic)
        return split_clips(dataset, plan.clip_len) if elements == "clip" else dataset
    records = video_records(index, shuffle, seed, reshuffle)
    if elements == "clip":
        return clip_elements(records, seeds, plan, size, calls)

    def load(record, elem_seed):
        path, label, num_frames = record
        frames, ok = tf.py_function(lambda p, n, s: video_frames(plan, p.numpy(), int(n), s.numpy(), size),
                                    [path, num_frames, elem_seed], [tf.uint8, tf.bool])
        return tf.ensure_shape(frames, [None, *size, 3]), label, elem_seed, tf.ensure_shape(ok, [])

    def usable(frames, label, elem_seed, ok):
        return ok

    def drop_flag(frames, label, elem_seed, ok):
        return frames, label, elem_seed

    dataset = tf.data.Dataset.zip(records, seeds).map(load, num_parallel_calls=calls, deterministic=deterministic)
    return dataset.filter(usable).map(drop_flag)


def split_clips(dataset, clip_len):
    """``elements="clip"`` for the in-graph sources (frame folders, TFRecords): each video's element
    ``(frames (K * T, H, W, C), label, seed)`` split into its K clips, with their positions."""
    def split(video, element):
        frames, label, elem_seed = element
        clips = tf.reshape(frames, [-1, clip_len, *frames.shape[1:]])
        count = tf.cast(tf.shape(clips)[0], tf.int64)
        positions = tf.stack([tf.fill([count], video), tf.zeros([count], tf.int64), tf.range(count),
                              tf.fill([count], count)], axis=1)
        return tf.data.Dataset.from_tensor_slices((clips, positions)).map(
            lambda clip, position: (clip, label, elem_seed, position))

    return dataset.enumerate().flat_map(split)


def view_keys(position, crops):
    """int64 ``(crops, 4)`` ``[video, attempt, view, views]`` of a clip's ``crops`` views from its ``position``
    ``[video, attempt, clip, clips]``: ``view = crop * clips + clip`` is the view's place in the video's crop-major
    order (the order of the ``elements="video"`` views) and ``views = crops * clips``."""
    crop = tf.range(crops, dtype=tf.int64)
    video, attempt, clip, clips = position[0], position[1], position[2], position[3]
    return tf.stack([tf.fill([crops], video), tf.fill([crops], attempt), crop * clips + clip,
                     tf.fill([crops], crops * clips)], axis=1)
