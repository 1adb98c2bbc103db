"""Unit3D and InceptionModule: shapes, TF-SAME padding by construction, branch order, config."""
import keras
import numpy as np
import pytest

from harness import run_fit_step, run_layer_test, run_saving_test, run_serialization_test
from keras_bert3d.layers.inception_module import BRANCH_NAMES, InceptionModule
from keras_bert3d.layers.unit3d import Unit3D

BRANCHES = [3, 2, 4, 2, 3, 5]  # b0, b1a, b1b, b2a, b2b, b3b


def _ceil_div(n, s):
    return -(-n // s)


def _reference_same_pad(x, kernel, stride):
    """The reference's per-call zero pad (pytorch-i3d compute_pad), written out on (B, T, H, W, C)."""
    pads = [(0, 0)]
    for axis, (k, s) in enumerate(zip(kernel, stride)):
        n = x.shape[axis + 1]
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def _randomise_bn(layer, seed):
    """Non-trivial running statistics so that BN is really exercised."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if "moving_variance" in w.path or "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.1, size=w.shape).astype("float32"))


def _unit_by_hand(unit, x):
    """Explicit reference padding + 'valid' conv + BN(eval) + ReLU with the unit's weights."""
    padded = _reference_same_pad(x, unit.kernel_size, unit.strides)
    y = keras.ops.convert_to_numpy(keras.ops.conv(padded, unit.conv3d.kernel, strides=unit.strides,
                                                  padding="valid"))
    bn = unit.bn
    y = (y - np.asarray(bn.moving_mean)) / np.sqrt(np.asarray(bn.moving_variance) + unit.bn_epsilon)
    return np.maximum(y * np.asarray(bn.gamma) + np.asarray(bn.beta), 0.0)


@pytest.mark.parametrize("size,kernel,stride", [
    ((5, 9, 8), 7, 2),        # odd/even mix, stride 2: pads (3,3) on odd sizes, (2,3) on even ones
    ((4, 6, 7), (1, 3, 3), (1, 2, 2)),
    ((3, 5, 5), 3, 1),
])
def test_unit3d_is_tf_same_padding_of_the_reference(size, kernel, stride):
    unit = Unit3D(4, kernel, stride)
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    expected_shape = (2, *(_ceil_div(n, s) for n, s in zip(size, unit.strides)), 4)
    out = run_layer_test(unit, x, expected_shape)
    _randomise_bn(unit, 1)
    np.testing.assert_allclose(np.asarray(unit(x, training=False)), _unit_by_hand(unit, x),
                               atol=1e-5, rtol=0)
    assert out.shape == expected_shape


def test_unit3d_weights_and_reference_bn_settings():
    unit = Unit3D(6, 3)
    unit.build((None, 4, 8, 8, 5))
    assert tuple(unit.conv3d.kernel.shape) == (3, 3, 3, 5, 6)
    assert not unit.conv3d.use_bias
    assert unit.bn.epsilon == 1e-3 and unit.bn.momentum == 0.99
    assert len(unit.trainable_weights) == 3 and len(unit.non_trainable_weights) == 2


@pytest.mark.parametrize("kwargs", [
    {"filters": 0}, {"filters": 2.5}, {"filters": 4, "kernel_size": (3, 3)},
    {"filters": 4, "strides": 0}, {"filters": 4, "bn_epsilon": 0.0}, {"filters": 4, "bn_momentum": 1.5},
])
def test_unit3d_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="received"):
        Unit3D(**kwargs)


def test_inception_module_shapes_and_serialization():
    layer = InceptionModule(BRANCHES)
    x = np.abs(np.random.default_rng(0).normal(size=(2, 3, 6, 5, 8))).astype("float32")
    out_channels = BRANCHES[0] + BRANCHES[2] + BRANCHES[4] + BRANCHES[5]
    run_layer_test(layer, x, (*x.shape[:-1], out_channels))
    assert layer.output_channels == out_channels
    weights_per_unit = 5  # conv kernel, gamma, beta, moving mean, moving variance
    assert len(layer.weights) == len(BRANCH_NAMES) * weights_per_unit
    assert tuple(layer.b1b.conv3d.kernel.shape) == (3, 3, 3, BRANCHES[1], BRANCHES[2])
    assert tuple(layer.b3b.conv3d.kernel.shape) == (1, 1, 1, x.shape[-1], BRANCHES[5])
    revived = run_serialization_test(layer)
    assert revived.branch_filters == BRANCHES


def test_inception_module_concatenates_b0_b1_b2_b3():
    layer = InceptionModule(BRANCHES)
    x = np.abs(np.random.default_rng(1).normal(size=(1, 3, 5, 4, 6))).astype("float32")
    layer(x)
    for i, name in enumerate(BRANCH_NAMES):
        _randomise_bn(getattr(layer, name), 10 + i)
    out = np.asarray(layer(x, training=False))
    # The branch-3 pool, as the reference computes it: zero pad (1, 1) on T, H, W, then a 'valid' max.
    pooled = keras.ops.convert_to_numpy(keras.ops.max_pool(
        _reference_same_pad(x, (3, 3, 3), (1, 1, 1)), 3, strides=1, padding="valid"))
    branches = [
        _unit_by_hand(layer.b0, x),
        _unit_by_hand(layer.b1b, _unit_by_hand(layer.b1a, x)),
        _unit_by_hand(layer.b2b, _unit_by_hand(layer.b2a, x)),
        _unit_by_hand(layer.b3b, pooled),
    ]
    np.testing.assert_allclose(out, np.concatenate(branches, axis=-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("branch_filters", [[1, 2, 3], [1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, "6"], 7])
def test_inception_module_rejects_bad_branch_filters(branch_filters):
    with pytest.raises(ValueError, match="received"):
        InceptionModule(branch_filters)


def test_inception_module_fit_step_and_saving(tmp_path):
    inputs = keras.Input((4, 6, 6, 3))
    x = InceptionModule(BRANCHES, name="mixed")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(2)
    clips = rng.normal(size=(2, 4, 6, 6, 3)).astype("float32")
    run_fit_step(model, clips, np.array([0, 2]),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    restored = run_saving_test(model, clips, tmp_path)
    assert isinstance(restored.get_layer("mixed"), InceptionModule)
