"""FastToSlowFusion: shapes from the stride, slow-first concatenation, fast pass-through, equivalence
with a hand-written NumPy lateral conv (symmetric (3,3) temporal padding, eval BN, ReLU), config, saving."""
import keras
import numpy as np
import pytest

from harness import random_clip, run_saving_test, run_serialization_test
from keras_bert3d.layers.fast_to_slow_fusion import FastToSlowFusion
from keras_bert3d.layers.padding import conv_output_size

BATCH, SIZE, SLOW_C, FAST_C = 2, 4, 6, 3


def make_inputs(fast_frames, alpha, kernel_t, seed=0):
    slow_frames = conv_output_size(fast_frames, kernel_t, alpha, kernel_t // 2)
    slow = random_clip(BATCH, slow_frames, SIZE, SLOW_C, seed=seed)
    fast = np.abs(random_clip(BATCH, fast_frames, SIZE, FAST_C, seed=seed + 1))
    return slow, fast


def randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.conv_f2s.kernel.assign(rng.normal(0, 0.3, layer.conv_f2s.kernel.shape).astype("float32"))
    c = layer.bn.gamma.shape
    layer.bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    layer.bn.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
    layer.bn.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
    layer.bn.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))


def numpy_lateral(fast, layer):
    """conv (k,1,1) stride (alpha,1,1) with k//2 zeros on BOTH time ends, then eval BN and ReLU."""
    k, alpha = layer.kernel_t, layer.alpha
    kernel = np.asarray(layer.conv_f2s.kernel)[:, 0, 0]  # (k, C_f, C_out)
    padded = np.pad(fast, [(0, 0), (k // 2, k // 2), (0, 0), (0, 0), (0, 0)])
    frames = conv_output_size(fast.shape[1], k, alpha, k // 2)
    out = np.stack([np.einsum("bthwc,tco->bhwo", padded[:, t * alpha:t * alpha + k], kernel)
                    for t in range(frames)], axis=1)
    bn = layer.bn
    out = (out - np.asarray(bn.moving_mean)) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    return np.maximum(out * np.asarray(bn.gamma) + np.asarray(bn.beta), 0)


@pytest.mark.parametrize("fast_frames,alpha,kernel_t,ratio", [(16, 4, 7, 2), (13, 4, 7, 2), (8, 2, 5, 1),
                                                              (6, 3, 3, 3)])
def test_shapes_and_numpy_equivalence(fast_frames, alpha, kernel_t, ratio):
    slow, fast = make_inputs(fast_frames, alpha, kernel_t)
    layer = FastToSlowFusion(fusion_ratio=ratio, kernel_t=kernel_t, alpha=alpha)
    expected_slow = (BATCH, slow.shape[1], SIZE, SIZE, SLOW_C + ratio * FAST_C)
    symbolic = layer([keras.KerasTensor(slow.shape), keras.KerasTensor(fast.shape)])
    assert [tuple(t.shape) for t in symbolic] == [expected_slow, fast.shape]
    assert [tuple(s) for s in layer.compute_output_shape([slow.shape, fast.shape])] == [expected_slow,
                                                                                        fast.shape]
    randomize(layer)
    fused, passed = (np.asarray(t) for t in layer([slow, fast], training=False))
    assert fused.shape == expected_slow
    np.testing.assert_array_equal(fused[..., :SLOW_C], slow)  # slow channels first, untouched
    np.testing.assert_array_equal(passed, fast)  # the fast pathway passes through
    np.testing.assert_allclose(fused[..., SLOW_C:], numpy_lateral(fast, layer), atol=1e-5)
    assert tuple(layer.conv_f2s.kernel.shape) == (kernel_t, 1, 1, FAST_C, ratio * FAST_C)
    assert layer.conv_f2s.use_bias is False


def test_temporal_padding_is_symmetric_not_tf_same():
    # One fast frame set to 1 at t=0: with (3,3) padding and stride 4, slow step 0 sees it at tap 3.
    layer = FastToSlowFusion(fusion_ratio=1)
    fast = np.zeros((1, 16, 1, 1, 1), "float32")
    fast[:, 0] = 1.0
    layer([np.zeros((1, 4, 1, 1, 1), "float32"), fast])
    taps = np.arange(7, dtype="float32").reshape(7, 1, 1, 1, 1) + 1.0
    layer.conv_f2s.kernel.assign(taps)
    out = np.asarray(layer([np.zeros((1, 4, 1, 1, 1), "float32"), fast], training=False)[0])[0, :, 0, 0, 1]
    bn = layer.bn
    scale = float(np.asarray(bn.gamma)[0]) / np.sqrt(float(np.asarray(bn.moving_variance)[0]) + bn.epsilon)
    np.testing.assert_allclose(out, np.array([taps[3, 0, 0, 0, 0], 0, 0, 0]) * scale, rtol=1e-6)


def test_serialization():
    layer = FastToSlowFusion(fusion_ratio=3, kernel_t=5, alpha=2, bn_epsilon=1e-3, bn_momentum=0.99)
    config = run_serialization_test(layer).get_config()
    assert (config["fusion_ratio"], config["kernel_t"], config["alpha"]) == (3, 5, 2)
    assert (config["bn_epsilon"], config["bn_momentum"]) == (1e-3, 0.99)


def test_saving_round_trip(tmp_path):
    slow, fast = make_inputs(8, 4, 7)
    slow_in, fast_in = keras.Input(slow.shape[1:]), keras.Input(fast.shape[1:])
    fused = FastToSlowFusion(name="fuse")([slow_in, fast_in])
    model = keras.Model([slow_in, fast_in], fused)
    randomize(model.get_layer("fuse"))
    run_saving_test(model, [slow, fast], tmp_path)


def test_mismatched_frames_raise():
    layer = FastToSlowFusion(alpha=4)
    with pytest.raises(ValueError, match="slow pathway has 3"):
        layer([keras.KerasTensor((1, 3, 4, 4, 2)), keras.KerasTensor((1, 16, 4, 4, 1))])


def test_single_input_raises():
    with pytest.raises(ValueError, match="called on \\[slow, fast\\]"):
        FastToSlowFusion()(keras.KerasTensor((1, 4, 4, 4, 2)))


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_t": 6}, "kernel_t=6"), ({"fusion_ratio": 0}, "fusion_ratio=0"), ({"alpha": 1.5}, "alpha=1.5"),
    ({"bn_epsilon": 0}, "bn_epsilon=0"), ({"bn_momentum": 1.0}, "bn_momentum=1.0"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastToSlowFusion(**kwargs)
