"""Which frames make a clip: the reference's train / validation / test sampling rules, 0-based.

REFERENCE.md 5.10 and 5.12 number frames from 1 and write ``D = n - 1`` for a video of ``n`` frames.
Translated to 0-based indices (frame ``f`` of the reference is index ``f - 1`` here):

- train: if ``D >= L``, ``off ~ U{0, ..., D - L}`` and the clip is ``off, ..., off + L - 1``
  (so the last frame, index ``n - 1``, is never used: a reference quirk kept on purpose);
  otherwise the clip starts at 0 and loops: ``j mod n`` for ``j = 0 .. L - 1``.
- val: ``off = int((D - L + 1) / 2)``, the same loop rule for short videos.
- test (``cover_clips``): non-overlapping clips at reference starts ``1, 1 + L, ...`` while ``< D - L``,
  shifted by ``int((D - (last_start + L)) / 2)``; 0-based index ``start + shift + j``. One looped clip when
  none fits.

``stride`` (frame step ``s``) generalises every rule with the clip's span ``(L - 1) * s + 1`` in place of
``L``; ``stride=1`` is the reference exactly. ``uniform_clips`` (K evenly spaced clips) is not a
reference rule: it follows MMAction2's test sampling. Every function returns int64 numpy arrays.
"""
import numpy as np

from keras_bert3d.validation import check_positive_int


def _check(num_frames, clip_len, stride):
    return (check_positive_int("num_frames", int(num_frames)), check_positive_int("clip_len", int(clip_len)),
            check_positive_int("stride", int(stride)))


def clip_span(clip_len, stride=1):
    """Frames covered by a clip of ``clip_len`` frames taken every ``stride`` frames."""
    return (int(clip_len) - 1) * int(stride) + 1


def loop_indices(num_frames, start, clip_len, stride=1):
    """``clip_len`` indices from ``start`` every ``stride`` frames, wrapping past the end (the reference's
    loop rule: ``(start + j * stride) mod num_frames``)."""
    num_frames, clip_len, stride = _check(num_frames, clip_len, stride)
    return (int(start) + stride * np.arange(clip_len, dtype=np.int64)) % num_frames


def train_indices(num_frames, clip_len, rng, stride=1, jitter=False):
    """A random training clip (REFERENCE.md 5.10, train).

    Args:
        num_frames: frames in the video (``n``).
        clip_len: frames in the clip (``L``).
        rng: a ``numpy.random.Generator`` or anything ``numpy.random.default_rng`` accepts (an int seed).
        stride: frame step inside the clip.
        jitter: temporal jitter: each frame moves forward by ``U{0, ..., stride - 1}`` inside its step
            (MMAction2's ``temporal_jitter``; no effect at ``stride=1``), capped at the last frame.

    Returns:
        int64 array ``(clip_len,)`` of 0-based frame indices.
    """
    num_frames, clip_len, stride = _check(num_frames, clip_len, stride)
    rng = np.random.default_rng(rng)
    last = num_frames - 1  # the reference's D
    span = clip_span(clip_len, stride)
    if last >= span:
        offset = int(rng.integers(0, last - span + 1))  # U{0, ..., D - span}
        indices = offset + stride * np.arange(clip_len, dtype=np.int64)
        if jitter and stride > 1:
            indices = np.minimum(indices + rng.integers(0, stride, clip_len), last)
        return indices
    indices = stride * np.arange(clip_len, dtype=np.int64)
    if jitter and stride > 1:
        indices = indices + rng.integers(0, stride, clip_len)
    return indices % num_frames


def val_indices(num_frames, clip_len, stride=1):
    """The centred validation clip (REFERENCE.md 5.10, val): ``off = int((D - L + 1) / 2)``, looping when
    the video is short. Also the single clip of the reference's BERT test script (5.12)."""
    num_frames, clip_len, stride = _check(num_frames, clip_len, stride)
    last = num_frames - 1
    span = clip_span(clip_len, stride)
    offset = (last - span + 1) // 2 if last >= span else 0
    return loop_indices(num_frames, offset, clip_len, stride)


def cover_clips(num_frames, clip_len, stride=1):
    """The reference's multi-clip test cover (REFERENCE.md 5.12, VideoSpatialPrediction3D).

    Returns:
        int64 array ``(num_clips, clip_len)``: consecutive non-overlapping clips whose coverage is centred
        in the video, or one looped clip when no full clip fits.
    """
    num_frames, clip_len, stride = _check(num_frames, clip_len, stride)
    last = num_frames - 1
    span = clip_span(clip_len, stride)
    starts = list(range(1, last - span, span))  # the reference's 1-based starts
    if not starts:
        return loop_indices(num_frames, 0, clip_len, stride)[None]
    shift = int((last - (starts[-1] + span)) / 2)
    steps = stride * np.arange(clip_len, dtype=np.int64)
    return np.stack([start + shift + steps for start in starts])


def uniform_clips(num_frames, clip_len, num_clips, stride=1):
    """``num_clips`` evenly spaced clips (MMAction2's test sampling): the clip starts sit at the centres of
    ``num_clips`` equal intervals of the possible starts; short videos loop from frame 0.

    Returns:
        int64 array ``(num_clips, clip_len)``.
    """
    num_frames, clip_len, stride = _check(num_frames, clip_len, stride)
    num_clips = check_positive_int("num_clips", int(num_clips))
    span = clip_span(clip_len, stride)
    if num_frames >= span:
        interval = (num_frames - span + 1) / num_clips
        starts = (interval * (np.arange(num_clips) + 0.5)).astype(np.int64)
    else:
        starts = np.zeros(num_clips, np.int64)
    return np.stack([loop_indices(num_frames, start, clip_len, stride) for start in starts])


def parse_clips(value):
    """A test-clip choice from code or a command line: ``"cover"``, ``"center"``, or a positive int
    (or its string): K uniform clips. Raises a ValueError naming what is accepted."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"clips must be >= 1; received clips={value}")
        return int(value)
    if value in ("cover", "center"):
        return value
    raise ValueError(f"clips must be 'cover' (the reference's multi-clip test), 'center' or a number of "
                     f"uniform clips; received clips={value!r}")


def eval_clips(num_frames, clip_len, clips_per_video="center", stride=1):
    """The clips of one test video: ``"center"`` (one centred clip, the BERT test script), ``"cover"``
    (the reference's non-overlapping multi-clip cover) or an int K (``uniform_clips``).

    Returns:
        int64 array ``(num_clips, clip_len)``.
    """
    if clips_per_video == "center":
        return val_indices(num_frames, clip_len, stride)[None]
    if clips_per_video == "cover":
        return cover_clips(num_frames, clip_len, stride)
    if isinstance(clips_per_video, (int, np.integer)) and not isinstance(clips_per_video, bool):
        return uniform_clips(num_frames, clip_len, clips_per_video, stride)
    raise ValueError(
        f"`clips_per_video` must be 'center', 'cover' or a positive int; received clips_per_video={clips_per_video!r}")

