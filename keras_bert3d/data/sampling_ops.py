"""The clip sampling rules of `keras_bert3d.data.sampling` as TensorFlow ops, for pipelines that must stay pure TF.

A graph with ``tf.numpy_function`` in it cannot leave its process, so the TFRecord source (whose dataset graph
the tf.data service ships to remote workers, `keras_bert3d.data.service`) samples its frame indices with these.
Val and test (``center``, ``cover``, K ``uniform`` clips) give exactly the NumPy rules' indices. Train draws from
the same distribution as `sampling.train_indices` (a uniform offset, uniform jitter), with stateless TF random
ops from a seed, so the draws differ from NumPy's for the same seed but depend on nothing else.

``num_frames`` is a scalar int tensor (a video's frame count); ``clip_len``, ``stride``, ``jitter`` and
``clips_per_video`` are Python values. Every function returns int64 tensors; a ``num_frames`` below 1 fails
(``tf.errors.InvalidArgumentError``), as the NumPy rules raise.
"""
import tensorflow as tf

from keras_bert3d.data.sampling import clip_span
from keras_bert3d.validation import check_positive_int


def _frames(num_frames):
    num_frames = tf.cast(num_frames, tf.int64)
    check = tf.debugging.assert_positive(num_frames, message="num_frames must be a positive int")
    with tf.control_dependencies([check]):
        return tf.identity(num_frames)


def _steps(clip_len, stride):
    return int(stride) * tf.range(int(clip_len), dtype=tf.int64)


def loop_indices(num_frames, start, clip_len, stride=1):
    """``(start + j * stride) mod num_frames`` for ``j < clip_len`` (`sampling.loop_indices`)."""
    return (tf.cast(start, tf.int64) + _steps(clip_len, stride)) % _frames(num_frames)


def train_indices(num_frames, clip_len, seed, stride=1, jitter=False):
    """A random training clip (`sampling.train_indices`' distribution): a uniform offset in
    ``0 .. D - span`` (``D = num_frames - 1``), or a clip looped from frame 0 when the video is short; with
    ``jitter`` (and ``stride > 1``) each frame moves by ``U{0, ..., stride - 1}``, capped at the last frame.

    Args:
        seed: a stateless seed, int ``(2,)`` (`tf.random.stateless_uniform`'s).
    """
    check_positive_int("clip_len", int(clip_len))
    check_positive_int("stride", int(stride))
    num_frames = _frames(num_frames)
    last, span = num_frames - 1, clip_span(clip_len, stride)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    offset = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=tf.maximum(last - span + 1, 1),
                                         dtype=tf.int64)
    steps = _steps(clip_len, stride)
    if jitter and stride > 1:
        steps += tf.random.stateless_uniform([int(clip_len)], seeds[1], minval=0, maxval=int(stride), dtype=tf.int64)
    return tf.where(last >= span, tf.minimum(offset + steps, last), steps % num_frames)


def val_indices(num_frames, clip_len, stride=1):
    """The centred validation clip (`sampling.val_indices`)."""
    num_frames = _frames(num_frames)
    last, span = num_frames - 1, clip_span(clip_len, stride)
    offset = tf.where(last >= span, (last - span + 1) // 2, tf.constant(0, tf.int64))
    return loop_indices(num_frames, offset, clip_len, stride)


def cover_clips(num_frames, clip_len, stride=1):
    """The reference's non-overlapping multi-clip test cover (`sampling.cover_clips`): ``(clips, clip_len)``."""
    num_frames = _frames(num_frames)
    last, span = num_frames - 1, clip_span(clip_len, stride)
    stop = last - span  # the reference's starts are range(1, stop, span)
    count = tf.maximum((stop - 1 + span - 1) // span, 0)
    starts = 1 + span * tf.range(count, dtype=tf.int64)
    shift = (last - (1 + span * (count - 1) + span)) // 2  # >= 0 whenever count > 0
    steps = _steps(clip_len, stride)
    return tf.cond(count > 0, lambda: starts[:, None] + shift + steps[None],
                   lambda: loop_indices(num_frames, 0, clip_len, stride)[None])


def uniform_clips(num_frames, clip_len, num_clips, stride=1):
    """``num_clips`` evenly spaced clips (`sampling.uniform_clips`): ``(num_clips, clip_len)``."""
    num_clips = check_positive_int("num_clips", int(num_clips))
    num_frames = _frames(num_frames)
    span = clip_span(clip_len, stride)
    interval = tf.cast(num_frames - span + 1, tf.float64) / num_clips  # float64, as NumPy computes it
    starts = tf.cast(interval * (tf.range(num_clips, dtype=tf.float64) + 0.5), tf.int64)
    starts = tf.where(num_frames >= span, starts, tf.zeros_like(starts))
    return (starts[:, None] + _steps(clip_len, stride)[None]) % num_frames


def eval_clips(num_frames, clip_len, clips_per_video="center", stride=1):
    """The clips of one test video (`sampling.eval_clips`): ``(clips, clip_len)``."""
    if clips_per_video == "center":
        return val_indices(num_frames, clip_len, stride)[None]
    if clips_per_video == "cover":
        return cover_clips(num_frames, clip_len, stride)
    return uniform_clips(num_frames, clip_len, clips_per_video, stride)


def clip_indices(mode, num_frames, clip_len, seed, stride=1, jitter=False, clips_per_video="center"):
    """The frame indices a video gives in ``mode``, flat int64 (`ClipPlan.indices`' rule, in TF): train
    ``train_indices`` from ``seed``, val ``val_indices``, test the ``eval_clips`` one after the other."""
    if mode == "train":
        return train_indices(num_frames, clip_len, seed, stride, jitter)
    if mode == "val":
        return val_indices(num_frames, clip_len, stride)
    return tf.reshape(eval_clips(num_frames, clip_len, clips_per_video, stride), [-1])
