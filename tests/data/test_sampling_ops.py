"""The TF sampling rules (keras_bert3d.data.sampling_ops) against the NumPy ones (keras_bert3d.data.sampling):
val / cover / uniform give the same indices for every (num_frames, clip_len, stride) tried; train draws stay in the
NumPy rule's support with the same distribution; bad frame counts fail."""
import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import sampling, sampling_ops

NUM_FRAMES = range(1, 60)
SHAPES = [(1, 1), (2, 1), (3, 2), (8, 1), (8, 2), (16, 1), (4, 3), (5, 5)]  # (clip_len, stride)


def _all_frames(fn):
    """``fn(num_frames)`` for every count of NUM_FRAMES, in one dataset pass (one trace)."""
    counts = tf.data.Dataset.from_tensor_slices(np.array(NUM_FRAMES, np.int32))
    return list(counts.map(fn).as_numpy_iterator())


@pytest.mark.parametrize("clip_len,stride", SHAPES)
def test_val_cover_uniform_equal_the_numpy_rules(clip_len, stride):
    rules = {
        "val": (lambda n: sampling_ops.val_indices(n, clip_len, stride),
                lambda n: sampling.val_indices(n, clip_len, stride)),
        "cover": (lambda n: sampling_ops.cover_clips(n, clip_len, stride),
                  lambda n: sampling.cover_clips(n, clip_len, stride)),
        "uniform3": (lambda n: sampling_ops.eval_clips(n, clip_len, 3, stride),
                     lambda n: sampling.eval_clips(n, clip_len, 3, stride)),
        "uniform7": (lambda n: sampling_ops.uniform_clips(n, clip_len, 7, stride),
                     lambda n: sampling.uniform_clips(n, clip_len, 7, stride)),
        "test-center": (lambda n: sampling_ops.clip_indices("test", n, clip_len, None, stride),
                        lambda n: sampling.eval_clips(n, clip_len, "center", stride).reshape(-1)),
    }
    for name, (tf_rule, np_rule) in rules.items():
        for n, got in zip(NUM_FRAMES, _all_frames(tf_rule)):
            expected = np_rule(n)
            assert got.dtype == np.int64 and got.shape == expected.shape, (name, n, got.shape, expected.shape)
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} num_frames={n}")


def _tf_train_draws(num_frames, clip_len, stride, jitter, draws):
    seeds = tf.data.Dataset.range(draws)
    rule = lambda s: sampling_ops.train_indices(num_frames, clip_len, tf.stack([s, tf.constant(7, tf.int64)]),
                                                stride, jitter)
    return next(seeds.map(rule).batch(draws).as_numpy_iterator())


def _np_train_draws(num_frames, clip_len, stride, jitter, draws):
    rng = np.random.default_rng(0)
    return np.stack([sampling.train_indices(num_frames, clip_len, rng, stride, jitter) for _ in range(draws)])


@pytest.mark.parametrize("num_frames,clip_len,stride,jitter", [
    (40, 8, 1, False), (9, 8, 1, False), (5, 8, 1, False), (30, 4, 3, False), (30, 4, 3, True), (7, 4, 3, True),
    (17, 16, 1, False)])
def test_train_draws_stay_in_the_numpy_support_with_its_distribution(num_frames, clip_len, stride, jitter):
    draws = 3000
    got = _tf_train_draws(num_frames, clip_len, stride, jitter, draws)
    expected = _np_train_draws(num_frames, clip_len, stride, jitter, draws)
    assert got.shape == expected.shape == (draws, clip_len) and got.dtype == np.int64
    assert got.min() >= 0 and got.max() < num_frames
    if not jitter:  # each clip is one of the NumPy rule's clips (the support is small: list it)
        assert {tuple(row) for row in got} <= {tuple(row) for row in expected}
    for position in range(clip_len):  # every frame's marginal: same support, total variation distance small
        values = np.arange(num_frames)
        p = np.bincount(got[:, position], minlength=num_frames) / draws
        q = np.bincount(expected[:, position], minlength=num_frames) / draws
        assert set(values[p > 0]) <= set(values[q > 0]), position
        assert 0.5 * np.abs(p - q).sum() < 0.08, (position, p, q)
    # the same seed gives the same clip; another seed (usually) another
    np.testing.assert_array_equal(got, _tf_train_draws(num_frames, clip_len, stride, jitter, draws))


def test_train_clips_follow_the_seed_and_bad_counts_fail():
    one = sampling_ops.train_indices(100, 8, [3, 4]).numpy()
    assert (one == sampling_ops.train_indices(100, 8, [3, 4]).numpy()).all()
    others = {tuple(sampling_ops.train_indices(100, 8, [s, 4]).numpy()) for s in range(20)}
    assert len(others) > 10
    np.testing.assert_array_equal(sampling_ops.clip_indices("val", 20, 8, None), sampling.val_indices(20, 8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_frames"):
        sampling_ops.val_indices(tf.constant(0), 8)
    with pytest.raises(ValueError, match="clip_len=0"):
        sampling_ops.train_indices(10, 0, [1, 2])
