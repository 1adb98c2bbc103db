import keras
import numpy as np
import pytest

from harness import random_clip, run_fit_step, run_layer_test, run_saving_test, run_serialization_test
from keras_bert3d.layers.conv2plus1d import Conv2Plus1D
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock


def out_size(n, stride):
    return (n + 2 - 3) // stride + 1


@pytest.mark.parametrize("in_channels, filters, strides, projection", [
    (8, 8, 1, False),  # identity shortcut
    (4, 8, 1, True),   # channel change -> projection
    (8, 8, 2, True),   # stride -> projection
    (4, 8, (1, 2, 2), True),
])
def test_shapes_widths_and_shortcut(in_channels, filters, strides, projection):
    x = random_clip(2, 5, 9, channels=in_channels)
    block = R2Plus1DBlock(filters, strides=strides)
    st, sh, sw = (strides,) * 3 if isinstance(strides, int) else strides
    expected = (2, out_size(5, st), out_size(9, sh), out_size(9, sw), filters)
    run_layer_test(block, x, expected)
    assert (block.downsample_conv is not None) == projection
    mid = Conv2Plus1D.reference_mid_filters(in_channels, filters)
    # The reference computes mid once from (inplanes, planes) and uses it for both convs.
    assert block.conv1.mid_filters == mid and block.conv2.mid_filters == mid
    assert block.conv1.strides == (st, sh, sw) and block.conv2.strides == (1, 1, 1)
    if projection:
        assert block.downsample_conv.strides == (st, sh, sw)
        assert tuple(block.downsample_conv.kernel.shape) == (1, 1, 1, in_channels, filters)
    convs = 9 * in_channels * mid + 3 * mid * filters + 9 * filters * mid + 3 * mid * filters
    bns = 2 * (2 * mid) + 2 * (2 * filters)
    shortcut = (in_channels * filters + 2 * filters) if projection else 0
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == convs + bns + shortcut


def test_mid_overrides():
    block = R2Plus1DBlock(16, strides=2, mid_filters=7, conv2_mid_filters=11)
    block.build((None, 4, 8, 8, 8))
    assert block.conv1.mid_filters == 7 and block.conv2.mid_filters == 11
    # conv2_mid_filters alone: conv1 keeps the formula, conv2 takes the override (Caffe2 fix).
    block = R2Plus1DBlock(16, strides=2, conv2_mid_filters=Conv2Plus1D.reference_mid_filters(16, 16))
    block.build((None, 4, 8, 8, 8))
    assert block.conv1.mid_filters == Conv2Plus1D.reference_mid_filters(8, 16)
    assert block.conv2.mid_filters == Conv2Plus1D.reference_mid_filters(16, 16)
    assert tuple(block.conv2.spatial_conv.kernel.shape) == (1, 3, 3, 16, block.conv2.mid_filters)


def test_identity_shortcut_adds_the_input():
    # With the residual branch zeroed (last BN gamma = beta = 0) the block is relu(input).
    x = random_clip(1, 4, 6, channels=8, seed=3)
    block = R2Plus1DBlock(8)
    block.build(x.shape)
    block.bn2.gamma.assign(np.zeros(8, "float32"))
    block.bn2.beta.assign(np.zeros(8, "float32"))
    np.testing.assert_allclose(np.asarray(block(x, training=False)), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(filters=-1), "filters=-1"),
    (dict(filters=8, mid_filters=0), "mid_filters=0"),
    (dict(filters=8, conv2_mid_filters="288"), "conv2_mid_filters='288'"),
    (dict(filters=8, strides=(2, 2)), "strides"),
    (dict(filters=8, bn_momentum=-0.1), "bn_momentum=-0.1"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        R2Plus1DBlock(**kwargs)


def test_config_saving_and_fit(tmp_path):
    block = R2Plus1DBlock(8, strides=2, mid_filters=6, conv2_mid_filters=5, bn_epsilon=1e-5,
                          bn_momentum=0.2, name="blk")
    config = run_serialization_test(block).get_config()
    assert config["strides"] == [2, 2, 2] and config["conv2_mid_filters"] == 5

    inp = keras.Input((4, 8, 8, 4))
    x = R2Plus1DBlock(8, strides=2, name="layer2_block0")(inp)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    clips = random_clip(2, 4, 8, channels=4)
    run_saving_test(model, clips, tmp_path)
    model = keras.Model(inp, keras.layers.Softmax()(model.output))
    run_fit_step(model, clips, np.array([0, 2]))
