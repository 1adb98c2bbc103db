"""Clip transforms as TF ops (graph-compatible, usable inside ``tf.data`` maps), REFERENCE.md 5.6-5.9, 5.12.

A clip is ``(T, H, W, C)``, uint8 or float. Every random choice is drawn once per clip, so all frames get
the same crop and flip. Random functions take ``seed``: ``None`` (stateful TF random ops) or a
shape-``[2]`` integer tensor for stateless, reproducible draws (the pipeline derives one per clip).
The resize, centre-crop and normalisation rules are `keras_bert3d.models.video_preprocessor`'s (the model's
own preprocessing): the centre window comes from its `crop_offsets` and normalisation is its `normalize`;
resizing is its rule written with ``tf.image`` for ``tf.data`` (bilinear, half-pixel centres, no antialiasing,
OpenCV's INTER_LINEAR; a uint8 clip comes back uint8, rounded, as ``cv2.resize`` returns it).
"""
import numpy as np
import tensorflow as tf

from keras_bert3d.models.video_preprocessor import crop_offsets
from keras_bert3d.models.video_preprocessor import normalize as normalize_rule
from keras_bert3d.validation import check_choice, check_positive_number

MULTI_SCALE_RATIOS = (1.0, 0.875, 0.75, 0.66)
NUM_CROPS = (1, 3, 10)
# The reference's 13 fixed crop positions, in units of (h_step, w_step): 4 corners, centre, 4 edge centres,
# 4 quarter points, in the reference's order.
FIXED_CROP_GRID = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4),
                   (1, 1), (1, 3), (3, 1), (3, 3))


def _seed(seed, salt):
    return None if seed is None else tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), salt)


def _randint(maxval, seed):
    """A scalar int32 in ``[0, maxval)``."""
    if seed is None:
        return tf.random.uniform([], 0, maxval, dtype=tf.int32)
    return tf.random.stateless_uniform([], seed, 0, maxval, dtype=tf.int32)


def _uniform(shape, seed):
    if seed is None:
        return tf.random.uniform(shape)
    return tf.random.stateless_uniform(shape, seed)


def _gamma(alpha, seed):
    if seed is None:
        return tf.random.gamma([], alpha)
    return tf.random.stateless_gamma([], seed, alpha)


def _bilinear(clip, size):
    out = tf.image.resize(clip, size, method="bilinear", antialias=False)
    if clip.dtype == tf.uint8:  # a convex mix of 0..255 rounds into 0..255: no clipping pass needed
        return tf.cast(tf.round(out), tf.uint8)
    return tf.cast(out, clip.dtype)


def resize(clip, size):
    """Bilinear resize of every frame (``(..., H, W, C)``) to ``size = [H, W]``; uint8 in, rounded uint8 out.

    Frames that already have ``size`` come back as they are, without a float pass (the rule is the identity
    there): known from the static shape, else checked at run time (TFRecords store frames at ``frame_size``)."""
    size = [int(v) if isinstance(v, (int, np.integer)) else v for v in size]
    height, width = clip.shape[-3], clip.shape[-2]
    if height is not None and width is not None and all(isinstance(v, int) for v in size):
        return clip if [height, width] == size else _bilinear(clip, size)
    same = tf.reduce_all(tf.equal(tf.shape(clip)[-3:-1], tf.cast(tf.stack(size), tf.int32)))
    out = tf.cond(same, lambda: tf.identity(clip), lambda: _bilinear(clip, size))
    static = [v if isinstance(v, int) else None for v in size]
    return tf.ensure_shape(out, clip.shape[:-3].concatenate(static).concatenate(clip.shape[-1:]))


def crop_size_pairs(base, ratios=MULTI_SCALE_RATIOS, max_distort=1):
    """The reference's candidate ``(crop_h, crop_w)`` pairs: sizes ``int(base * r)``, pairs whose ratio
    indices differ by at most ``max_distort`` (10 pairs for 4 ratios), height index outermost."""
    sizes = [int(base * r) for r in ratios]
    return [(sizes[i], sizes[j]) for i in range(len(ratios)) for j in range(len(ratios))
            if abs(i - j) <= max_distort]


def fixed_crop_offsets(height, width, size):
    """The reference's 13 fixed ``(y, x)`` crop positions on the grid ``h_step = int((H - S) / 4)``,
    ``w_step = int((W - S) / 4)`` where ``S`` is the network input size (not the crop size): 4 corners,
    centre, 4 edge centres, 4 quarter points, in the reference's order."""
    h_step, w_step = int((height - size) / 4), int((width - size) / 4)
    return [(r * h_step, c * w_step) for r, c in FIXED_CROP_GRID]


def crop_window(height, width, size, pair_index, offset_index, ratios=MULTI_SCALE_RATIOS, max_distort=1):
    """The window ``(y, x, h, w)`` that multi-scale crop ``pair_index`` at position ``offset_index`` cuts
    from an ``height x width`` frame, clipped at the border as NumPy slicing clips it (int32 tensors)."""
    height = tf.cast(height, tf.int64)
    width = tf.cast(width, tf.int64)
    base = tf.cast(tf.minimum(height, width), tf.float64)
    sizes = tf.cast(tf.floor(base * tf.constant(ratios, tf.float64)), tf.int64)  # int(base * r), exactly
    n = len(ratios)
    pairs = [(i, j) for i in range(n) for j in range(n) if abs(i - j) <= max_distort]
    crop_h = tf.gather(sizes, tf.gather([i for i, _ in pairs], pair_index))
    crop_w = tf.gather(sizes, tf.gather([j for _, j in pairs], pair_index))
    h_step = tf.truncatediv(height - size, 4)
    w_step = tf.truncatediv(width - size, 4)
    grid = tf.constant(FIXED_CROP_GRID, tf.int64)
    y = grid[offset_index, 0] * h_step
    x = grid[offset_index, 1] * w_step
    window = [y, x, tf.minimum(crop_h, height - y), tf.minimum(crop_w, width - x)]
    return [tf.cast(v, tf.int32) for v in window]


def multi_scale_crop(clip, size, ratios=MULTI_SCALE_RATIOS, max_distort=1, seed=None):
    """The reference's ``MultiScaleCrop((S, S), ratios)`` with fix_crop and more_fix_crop (REFERENCE.md 5.8):
    one of ``crop_size_pairs`` and one of the 13 ``fixed_crop_offsets`` uniformly, the window clipped at the
    border, then resized to ``size x size``. Needs ``H >= size`` and ``W >= size``."""
    shape = tf.shape(clip)
    y, x, h, w = multi_scale_window(shape[1], shape[2], size, ratios, max_distort, seed)
    return resize(tf.slice(clip, [0, y, x, 0], [-1, h, w, -1]), [size, size])


def multi_scale_window(height, width, size, ratios=MULTI_SCALE_RATIOS, max_distort=1, seed=None):
    """The random draw of `multi_scale_crop`: its window ``(y, x, h, w)`` (int32) in an ``height x width``
    frame (the host path crops it; ``make_dataset(augment="device")`` hands it to the device)."""
    tf.debugging.assert_greater_equal(tf.minimum(height, width), size, message="multi_scale_crop: frame < crop size")
    num_pairs = len(crop_size_pairs(1, ratios, max_distort))
    return crop_window(height, width, size, _randint(num_pairs, _seed(seed, 1)),
                       _randint(len(FIXED_CROP_GRID), _seed(seed, 2)), ratios, max_distort)


def flip_draw(seed=None, probability=0.5):
    """The random draw of `random_flip`: a bool scalar, True to flip."""
    return _uniform([], _seed(seed, 3)) < probability


def random_flip(clip, seed=None, probability=0.5):
    """Flip the whole clip left-right with ``probability``. Flow x is *not* negated (the reference's
    ``RandomHorizontalFlip``, REFERENCE.md 5.8)."""
    return tf.cond(flip_draw(seed, probability), lambda: _mirror(clip), lambda: clip)


def _mirror(clip):
    """``tf.reverse(clip, [2])`` of ``(T, H, W, C)`` frames, as the reverse of the middle axis of a ``(T*H, W, C)``
    view: TF's kernel has a fast path for that case (6x faster on a 64x224x224x3 uint8 clip, one core)."""
    shape = tf.shape(clip)
    out = tf.reshape(tf.reverse(tf.reshape(clip, [-1, shape[2], shape[3]]), axis=[1]), shape)
    return tf.ensure_shape(out, clip.shape)


def _crop(clip, y, x, size):
    return tf.slice(clip, [0, y, x, 0], [-1, size, size, -1])


def _centre(clip, size):
    """``(y, x)`` of the centre ``size x size`` window of ``(T, H, W, C)`` frames: `crop_offsets`' rule, on the
    static frame size (what the pipeline gives), else on the run-time size."""
    height, width = clip.shape[1], clip.shape[2]
    if height is not None and width is not None:
        return crop_offsets((height, width), size)
    shape = tf.shape(clip)
    offsets = tf.numpy_function(lambda h, w: np.asarray(crop_offsets((int(h), int(w)), size), np.int32),
                                [shape[1], shape[2]], tf.int32, stateful=False)
    offsets = tf.ensure_shape(offsets, [2])
    return offsets[0], offsets[1]


def center_crop(clip, size):
    """``size x size`` at ``y = round((H - S) / 2)``, ``x = round((W - S) / 2)`` (REFERENCE.md 5.9; Python's
    round, half to even): `keras_bert3d.models.video_preprocessor.crop_offsets`."""
    y, x = _centre(clip, size)
    return _crop(clip, y, x, size)


def multi_crops(clip, size, num_crops=1):
    """The test crops of one clip, stacked ``(num_crops, T, S, S, C)``.

    - 1: the centre crop.
    - 3: three crops along the long side (left/top, centre, right/bottom), centred on the short side
      (MMAction2's ThreeCrop, with the centre rule of ``center_crop``).
    - 10: centre, top-left, top-right, bottom-left, bottom-right, then the same five on the flipped clip
      (the reference's ten-crop order, REFERENCE.md 5.12).
    """
    check_choice("num_crops", num_crops, NUM_CROPS)
    shape = tf.shape(clip)
    height, width = shape[1], shape[2]
    cy, cx = _centre(clip, size)
    if num_crops == 1:
        return center_crop(clip, size)[None]
    if num_crops == 3:
        along_w = [(cy, 0), (cy, cx), (cy, width - size)]
        along_h = [(0, cx), (cy, cx), (height - size, cx)]
        return tf.cond(width >= height, lambda: tf.stack([_crop(clip, y, x, size) for y, x in along_w]),
                       lambda: tf.stack([_crop(clip, y, x, size) for y, x in along_h]))
    positions = [(cy, cx), (0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
    flipped = tf.reverse(clip, axis=[2])
    crops = [_crop(clip, y, x, size) for y, x in positions] + [_crop(flipped, y, x, size) for y, x in positions]
    return tf.stack(crops)


def normalize(clip, preprocessing):
    """``(clip * scale - mean) / std`` per channel, float32, from a preset's ``preprocessing`` dict: the
    `VideoPreprocessor`'s own rule (`keras_bert3d.models.video_preprocessor.normalize`), on tf tensors."""
    mean = tf.constant(preprocessing["mean"], tf.float32)
    std = tf.constant(preprocessing["std"], tf.float32)
    if clip.shape[-1] is not None and clip.shape[-1] != len(preprocessing["mean"]):
        raise ValueError(f"The clip has {clip.shape[-1]} channels but the preprocessing has "
                         f"{len(preprocessing['mean'])}; received preprocessing={preprocessing}")
    return normalize_rule(tf.cast(clip, tf.float32), float(preprocessing["scale"]), mean, std)


def _beta(alpha, seed):
    """``lam ~ Beta(alpha, alpha)``, after checking ``alpha > 0``."""
    check_positive_number("alpha", alpha)
    a = _gamma(alpha, _seed(seed, 4))
    b = _gamma(alpha, _seed(seed, 5))
    return a / (a + b)


def mixup(clips, labels, alpha=0.2, seed=None):
    """Mixup on a batch: ``lam ~ Beta(alpha, alpha)`` once per batch, each clip mixed with the batch in
    reverse order. ``labels`` are one-hot (or soft) ``(B, num_classes)``; returns float32 clips and labels."""
    lam = _beta(alpha, seed)
    clips = tf.cast(clips, tf.float32)
    labels = tf.cast(labels, tf.float32)
    return (lam * clips + (1.0 - lam) * tf.reverse(clips, [0]),
            lam * labels + (1.0 - lam) * tf.reverse(labels, [0]))


def cutmix(clips, labels, alpha=1.0, seed=None):
    """CutMix on a batch ``(B, T, H, W, C)``: one box (the same on every frame) with area fraction
    ``1 - lam``, ``lam ~ Beta(alpha, alpha)``, pasted from the batch in reverse order; labels mixed by the
    box's actual area. ``labels`` one-hot ``(B, num_classes)``."""
    lam = _beta(alpha, seed)
    shape = tf.shape(clips)
    height, width = tf.cast(shape[2], tf.float32), tf.cast(shape[3], tf.float32)
    cut = tf.sqrt(1.0 - lam)
    centre = _uniform([2], _seed(seed, 6)) * tf.stack([height, width])
    half = tf.stack([height * cut, width * cut]) / 2.0
    low = tf.cast(tf.round(tf.clip_by_value(centre - half, 0.0, tf.stack([height, width]))), tf.int32)
    high = tf.cast(tf.round(tf.clip_by_value(centre + half, 0.0, tf.stack([height, width]))), tf.int32)
    rows = tf.range(shape[2])
    cols = tf.range(shape[3])
    in_rows = (rows >= low[0]) & (rows < high[0])
    in_cols = (cols >= low[1]) & (cols < high[1])
    box = tf.cast(in_rows[:, None] & in_cols[None, :], tf.float32)[None, None, :, :, None]
    clips = tf.cast(clips, tf.float32)
    mixed = clips * (1.0 - box) + tf.reverse(clips, [0]) * box
    kept = 1.0 - tf.reduce_sum(box) / (height * width)
    labels = tf.cast(labels, tf.float32)
    return mixed, kept * labels + (1.0 - kept) * tf.reverse(labels, [0])
