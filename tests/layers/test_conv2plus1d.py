import keras
import numpy as np
import pytest

from harness import random_clip, run_layer_test, run_saving_test, run_serialization_test
from keras_bert3d.layers.conv2plus1d import Conv2Plus1D


def out_size(n, stride):
    # kernel 3, symmetric padding 1 (PyTorch), as in the reference.
    return (n + 2 * 1 - 3) // stride + 1


def randomize_bn(bn, rng):
    channels = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
    bn.beta.assign(rng.normal(0, 0.1, channels).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 0.1, channels).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))


@pytest.mark.parametrize("strides", [1, 2, (2, 1, 2)])
def test_output_shape_and_weights(strides):
    x = random_clip(2, 5, 9, channels=4)
    layer = Conv2Plus1D(6, 5, strides=strides)
    st, sh, sw = (strides,) * 3 if isinstance(strides, int) else strides
    expected = (2, out_size(5, st), out_size(9, sh), out_size(9, sw), 6)
    run_layer_test(layer, x, expected)
    # spatial kernel (1,3,3,4,5), BN(5) gamma/beta (+2 moving stats), temporal kernel (3,1,1,5,6), no bias.
    assert tuple(layer.spatial_conv.kernel.shape) == (1, 3, 3, 4, 5)
    assert tuple(layer.temporal_conv.kernel.shape) == (3, 1, 1, 5, 6)
    assert layer.spatial_conv.strides == (1, sh, sw)
    assert layer.temporal_conv.strides == (st, 1, 1)
    assert len(layer.trainable_weights) == 4
    assert len(layer.non_trainable_weights) == 2
    assert layer.count_params() == 1 * 3 * 3 * 4 * 5 + 4 * 5 + 3 * 5 * 6


@pytest.mark.parametrize("strides", [1, 2])
def test_equals_hand_wired_spatial_then_temporal(strides):
    """Equivalence by construction: the same weights in a plain Conv3D/BN/ReLU/Conv3D chain."""
    rng = np.random.default_rng(1)
    x = random_clip(2, 6, 10, channels=3, seed=2)
    layer = Conv2Plus1D(7, 5, strides=strides)
    layer.build(x.shape)
    randomize_bn(layer.spatial_bn, rng)

    inp = keras.Input(x.shape[1:])
    h = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)))(inp)
    spatial = keras.layers.Conv3D(5, (1, 3, 3), strides=(1, strides, strides), use_bias=False)
    h = spatial(h)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    h = keras.layers.ReLU()(bn(h))
    h = keras.layers.ZeroPadding3D(((1, 1), (0, 0), (0, 0)))(h)
    temporal = keras.layers.Conv3D(7, (3, 1, 1), strides=(strides, 1, 1), use_bias=False)
    wired = keras.Model(inp, temporal(h))
    spatial.set_weights(layer.spatial_conv.get_weights())
    bn.set_weights(layer.spatial_bn.get_weights())
    temporal.set_weights(layer.temporal_conv.get_weights())

    expected = np.asarray(wired(x, training=False))
    actual = np.asarray(layer(x, training=False))
    assert actual.shape == (2, out_size(6, strides), out_size(10, strides), out_size(10, strides), 7)
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    assert np.abs(expected).max() > 0.1  # not a trivially zero comparison


def test_reference_mid_filters():
    f = Conv2Plus1D.reference_mid_filters
    # The mid widths of R(2+1)D-34 (REFERENCE.md 3.1), from floor(in*out*27 / (in*9 + 3*out)).
    for (cin, cout), mid in {(64, 64): 144, (64, 128): 230, (128, 128): 288, (128, 256): 460,
                             (256, 256): 576, (256, 512): 921, (512, 512): 1152}.items():
        assert f(cin, cout) == mid == (cin * cout * 27) // (cin * 9 + 3 * cout)
    # The formula keeps the (2+1)D pair within one mid channel's weights of a full 3x3x3 conv.
    for cin, cout in [(64, 64), (64, 128), (256, 512)]:
        mid = f(cin, cout)
        pair = 9 * cin * mid + 3 * mid * cout
        assert 0 <= 27 * cin * cout - pair < 9 * cin + 3 * cout
    with pytest.raises(ValueError, match="in_channels=0"):
        f(0, 64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(filters=0, mid_filters=4), "filters=0"),
    (dict(filters=4, mid_filters=2.5), "mid_filters=2.5"),
    (dict(filters=4, mid_filters=4, strides=(1, 2)), "strides"),
    (dict(filters=4, mid_filters=4, strides=0), "strides"),
    (dict(filters=4, mid_filters=4, bn_momentum=1.5), "bn_momentum=1.5"),
    (dict(filters=4, mid_filters=4, bn_epsilon=0), "bn_epsilon=0"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2Plus1D(**kwargs)


def test_config_and_saving(tmp_path):
    layer = Conv2Plus1D(6, 5, strides=(2, 1, 1), bn_epsilon=1e-4, bn_momentum=0.2, name="c21")
    config = run_serialization_test(layer).get_config()
    assert config["strides"] == [2, 1, 1] and config["mid_filters"] == 5 and config["bn_epsilon"] == 1e-4
    inp = keras.Input((4, 8, 8, 3))
    model = keras.Model(inp, Conv2Plus1D(6, 5, strides=2)(inp))
    run_saving_test(model, random_clip(1, 4, 8), tmp_path)
