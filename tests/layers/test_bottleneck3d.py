"""Bottleneck3D: shapes from strides (grouped and not), config, saving, projection rules, errors,
and equivalence by construction of the grouped conv (dense block-diagonal kernel; per-group
hand-computed convs on channel slices)."""
import keras
import numpy as np
import pytest
from keras import ops

from harness import random_clip, run_layer_test, run_saving_test, run_serialization_test
from keras_bert3d.layers.bottleneck3d import Bottleneck3D
from keras_bert3d.layers.padding import conv_output_size

BATCH, FRAMES, SIZE, CHANNELS = 2, 4, 7, 8


def expected_shape(filters, strides, kernel_b=(3, 3, 3), frames=FRAMES, size=SIZE):
    dims = [conv_output_size(n, k, s, k // 2)
            for n, k, s in zip((frames, size, size), kernel_b, strides)]
    return (BATCH, *dims, filters)


def randomize(layer, seed=0):
    """Random values for every weight, BN statistics included, so each one matters."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if "moving_variance" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        weight.assign(value.astype("float32"))


@pytest.mark.parametrize("strides,groups,filters,mid", [
    ((1, 1, 1), 4, 16, 8),
    ((2, 2, 2), 4, 16, 8),
    ((1, 2, 2), 2, 8, 4),
    ((2, 1, 2), 1, 12, 6),
])
def test_output_shape_from_strides(strides, groups, filters, mid):
    layer = Bottleneck3D(filters, mid, strides=strides, groups=groups)
    x = random_clip(BATCH, FRAMES, SIZE, CHANNELS)
    out = run_layer_test(layer, x, expected_shape(filters, strides))
    assert np.all(np.asarray(out) >= 0)  # final ReLU
    assert tuple(layer.conv_b.kernel.shape) == (3, 3, 3, mid // groups, mid)


def test_slowfast_style_kernels():
    layer = Bottleneck3D(16, 4, strides=(1, 2, 2), kernel_a=(3, 1, 1), kernel_b=(1, 3, 3))
    x = random_clip(BATCH, FRAMES, SIZE, CHANNELS)
    run_layer_test(layer, x, expected_shape(16, (1, 2, 2), kernel_b=(1, 3, 3)))
    assert tuple(layer.conv_a.kernel.shape) == (3, 1, 1, CHANNELS, 4)


def test_serialization():
    layer = Bottleneck3D(16, 8, strides=(1, 2, 2), groups=4, kernel_a=(3, 1, 1), projection=True,
                         bn_epsilon=1e-3, bn_momentum=0.99, zero_init_last_bn=True)
    revived = run_serialization_test(layer)
    config = revived.get_config()
    assert config["strides"] == [1, 2, 2] and config["kernel_a"] == [3, 1, 1]
    assert config["groups"] == 4 and config["projection"] is True


def test_zero_init_last_bn():
    layer = Bottleneck3D(8, 4, zero_init_last_bn=True)
    layer.build((None, FRAMES, SIZE, SIZE, 8))
    assert np.all(np.asarray(layer.bn_c.gamma) == 0)
    # With gamma 0 the residual branch is bn_c's beta (0): the block is relu(identity).
    x = random_clip(BATCH, FRAMES, SIZE, 8)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), np.maximum(x, 0), atol=1e-6)


def test_saving_round_trip(tmp_path):
    inputs = keras.Input((FRAMES, SIZE, SIZE, CHANNELS))
    layer = Bottleneck3D(16, 8, strides=2, groups=4, name="block")
    model = keras.Model(inputs, layer(inputs))
    randomize(layer)
    restored = run_saving_test(model, random_clip(BATCH, FRAMES, SIZE, CHANNELS), tmp_path)
    assert restored.get_layer("block").shortcut_conv is not None


@pytest.mark.parametrize("in_channels,filters,strides,projection,expect", [
    (8, 8, 1, None, False),   # same shape: identity
    (8, 16, 1, None, True),   # channels change
    (8, 8, 2, None, True),    # stride changes the shape
    (8, 8, (1, 2, 2), None, True),
    (8, 8, 1, True, True),    # forced
    (8, 8, 1, False, False),
])
def test_projection_rules(in_channels, filters, strides, projection, expect):
    mid = 4
    layer = Bottleneck3D(filters, mid, strides=strides, projection=projection)
    layer.build((None, FRAMES, SIZE, SIZE, in_channels))
    assert (layer.shortcut_conv is not None) is expect
    assert (layer.shortcut_bn is not None) is expect
    expected = in_channels * mid + 27 * mid * mid + mid * filters  # conv_a, conv_b, conv_c
    expected += 2 * (mid + mid + filters)  # BN gamma and beta
    if expect:
        expected += in_channels * filters + 2 * filters
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == expected


def test_input_smaller_than_kernel():
    """Built on the padded shape: a 2x2x2 map through the 3x3x3 / (3,1,1) convs works."""
    x = random_clip(1, 2, 2, CHANNELS)
    layer = Bottleneck3D(CHANNELS, 4, groups=2, kernel_a=(3, 1, 1))
    assert tuple(layer(x).shape) == (1, 2, 2, 2, CHANNELS)


def test_projection_false_needs_matching_channels():
    layer = Bottleneck3D(16, 4, projection=False)
    with pytest.raises(ValueError, match="projection=False"):
        layer.build((None, FRAMES, SIZE, SIZE, 8))


@pytest.mark.parametrize("kwargs,match", [
    ({"filters": 0, "mid_filters": 4}, "filters=0"),
    ({"filters": -8, "mid_filters": 4}, "filters=-8"),
    ({"filters": 8.0, "mid_filters": 4}, "filters=8.0"),
    ({"filters": 8, "mid_filters": 0}, "mid_filters=0"),
    ({"filters": 8, "mid_filters": 4, "groups": 0}, "groups=0"),
    ({"filters": 8, "mid_filters": 6, "groups": 4}, r"\(6\).*\(4\)"),
    ({"filters": 8, "mid_filters": 4, "projection": "auto"}, "projection='auto'"),
    ({"filters": 8, "mid_filters": 4, "strides": (1, 2)}, r"strides=\(1, 2\)"),
    ({"filters": 8, "mid_filters": 4, "kernel_b": (3, 3)}, r"kernel_b=\(3, 3\)"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Bottleneck3D(**kwargs)


def test_grouped_equals_block_diagonal_dense():
    groups, mid, filters = 4, 8, 16
    x = random_clip(1, FRAMES, SIZE, CHANNELS, seed=1)
    grouped = Bottleneck3D(filters, mid, strides=2, groups=groups)
    dense = Bottleneck3D(filters, mid, strides=2, groups=1)
    grouped.build(x.shape)
    dense.build(x.shape)
    randomize(grouped)
    for src, dst in zip(grouped.weights, dense.weights):
        if src is grouped.conv_b.kernel:
            continue
        dst.assign(src)
    kernel = np.asarray(grouped.conv_b.kernel)  # (3, 3, 3, mid / groups, mid)
    per = mid // groups
    block_diagonal = np.zeros(kernel.shape[:3] + (mid, mid), "float32")
    for g in range(groups):
        block_diagonal[..., g * per:(g + 1) * per, g * per:(g + 1) * per] = \
            kernel[..., g * per:(g + 1) * per]
    dense.conv_b.kernel.assign(block_diagonal)
    np.testing.assert_allclose(np.asarray(grouped(x, training=False)),
                               np.asarray(dense(x, training=False)), atol=1e-5)
    # and the off-diagonal blocks matter: a dense kernel without zeros differs
    dense.conv_b.kernel.assign(block_diagonal + 0.1)
    assert np.max(np.abs(np.asarray(grouped(x, training=False))
                         - np.asarray(dense(x, training=False)))) > 1e-3


def _bn(x, bn):
    mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
    return (x - mean) / np.sqrt(var + bn.epsilon) * np.asarray(bn.gamma) + np.asarray(bn.beta)


def _conv(x, kernel, strides, pad):
    x = ops.pad(x, [[0, 0]] + [[p, p] for p in pad] + [[0, 0]])
    return np.asarray(ops.conv(x, kernel, strides=strides, padding="valid"))


def test_grouped_equals_sum_of_independent_group_convs():
    """The whole block, hand-computed with one conv per channel slice of conv_b."""
    groups, mid, filters, strides = 2, 8, 12, (2, 1, 2)
    x = random_clip(1, FRAMES, SIZE, CHANNELS, seed=2)
    layer = Bottleneck3D(filters, mid, strides=strides, groups=groups, bn_epsilon=1e-3)
    layer.build(x.shape)
    randomize(layer, seed=3)

    h = np.maximum(_bn(_conv(x, layer.conv_a.kernel, 1, (0, 0, 0)), layer.bn_a), 0)
    kernel = np.asarray(layer.conv_b.kernel)
    per = mid // groups
    slices = [_conv(h[..., g * per:(g + 1) * per], kernel[..., g * per:(g + 1) * per],
                    strides, (1, 1, 1)) for g in range(groups)]
    h = np.maximum(_bn(np.concatenate(slices, axis=-1), layer.bn_b), 0)
    h = _bn(_conv(h, layer.conv_c.kernel, 1, (0, 0, 0)), layer.bn_c)
    shortcut = _bn(_conv(x, layer.shortcut_conv.kernel, strides, (0, 0, 0)), layer.shortcut_bn)
    expected = np.maximum(h + shortcut, 0)

    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, atol=1e-5)
