"""NonLocalBlock: shapes, identity start, equivalence with a hand-written NLBlockND, saving, training."""
import pathlib

import keras
import numpy as np
import pytest

from harness import random_clip, run_fit_step, run_layer_test, run_saving_test, run_serialization_test
from keras_bert3d.layers.non_local_block import NonLocalBlock

KEYS = pathlib.Path(__file__).parents[1] / "fixtures" / "keys" / "rgb_resneXt3D64f101_FRMB_NLB_concatenation.txt"
BATCH, FRAMES, SIZE, CHANNELS = 2, 2, 3, 4
SUBLAYERS = ("g", "theta", "phi", "w_z_conv", "w_z_bn")


def _clip(seed=0, frames=FRAMES, size=SIZE):
    return np.abs(random_clip(BATCH, frames, size, CHANNELS, seed=seed))


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        values = rng.normal(scale=0.5, size=variable.shape)
        if "variance" in variable.path:
            values = rng.uniform(0.5, 1.5, size=variable.shape)
        variable.assign(values.astype("float32"))


def _numpy_nlb(x, layer):
    """NLBlockND 'embedded' (reference formula, float64) on a channels-last clip."""
    def conv(t, sub):
        return t @ np.asarray(sub.kernel, "float64")[0, 0, 0] + np.asarray(sub.bias, "float64")

    batch, channels = x.shape[0], x.shape[-1]
    x64 = x.astype("float64")
    theta = conv(x64, layer.theta).reshape(batch, -1, layer.theta.filters)
    phi = conv(x64, layer.phi).reshape(batch, -1, layer.phi.filters)
    g = conv(x64, layer.g).reshape(batch, -1, layer.g.filters)
    num_positions = int(np.prod(x.shape[1:4]))
    assert theta.shape[1] == num_positions
    f = theta @ phi.transpose(0, 2, 1) / np.sqrt(num_positions)
    f = np.exp(f - f.max(-1, keepdims=True))
    f = f / f.sum(-1, keepdims=True)
    y = (f @ g).reshape(x.shape[:-1] + (g.shape[-1],))
    w_y = conv(y, layer.w_z_conv)
    bn = layer.w_z_bn
    w_y = (w_y - np.asarray(bn.moving_mean)) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    assert w_y.shape[-1] == channels
    return w_y * np.asarray(bn.gamma) + np.asarray(bn.beta) + x64


@pytest.mark.parametrize("inter_channels", [None, 2])
def test_shapes_sublayers_and_serialization(inter_channels):
    layer = NonLocalBlock(inter_channels=inter_channels)
    x = _clip()
    run_layer_test(layer, x, x.shape)
    inter = inter_channels or CHANNELS
    assert [layer.g.filters, layer.theta.filters, layer.phi.filters, layer.w_z_conv.filters] == \
        [inter, inter, inter, CHANNELS]
    assert {w.path.split("/")[1] for w in layer.weights} == set(SUBLAYERS)
    assert all(getattr(layer, name).use_bias for name in SUBLAYERS[:4])
    convs = 3 * (CHANNELS * inter + inter) + inter * CHANNELS + CHANNELS
    assert layer.count_params() == convs + 4 * CHANNELS
    config = run_serialization_test(layer).get_config()
    assert config["inter_channels"] == inter_channels and config["bn_epsilon"] == 1e-5


def test_reference_parameter_count():
    """NLBlockND(512, inter 512): the same count as the reference's NLB.* state-dict entries."""
    layer = NonLocalBlock()
    layer.build((None, 4, 4, 4, 512))
    from_keys = 0
    for line in KEYS.read_text().splitlines():
        if line.startswith("NLB.") and "num_batches_tracked" not in line:
            shape = line.split("(", 1)[1].rstrip(")").split(",")
            from_keys += int(np.prod([int(s) for s in shape if s.strip()]))
    assert from_keys > 0 and layer.count_params() == from_keys


def test_identity_when_w_z_bn_is_zero():
    layer = NonLocalBlock(inter_channels=3)
    x = _clip(seed=2)
    layer.build(x.shape)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)  # the reference's zero-initialised BN
    _randomize(layer)
    assert np.max(np.abs(np.asarray(layer(x)) - x)) > 1e-2
    layer.w_z_bn.gamma.assign(np.zeros(CHANNELS, "float32"))
    layer.w_z_bn.beta.assign(np.zeros(CHANNELS, "float32"))
    np.testing.assert_allclose(np.asarray(layer(x)), x, atol=1e-6)


@pytest.mark.parametrize("inter_channels", [None, 3])
def test_equals_numpy_nlblocknd(inter_channels):
    layer = NonLocalBlock(inter_channels=inter_channels)
    x = _clip(seed=3)
    layer.build(x.shape)
    _randomize(layer, seed=4)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), _numpy_nlb(x, layer), atol=1e-5)


def test_unknown_positions_at_build_time():
    inputs = keras.Input((None, None, None, CHANNELS))
    model = keras.Model(inputs, NonLocalBlock(name="nlb")(inputs))
    _randomize(model.get_layer("nlb"))
    for frames, size in ((2, 3), (3, 2)):
        x = _clip(seed=frames, frames=frames, size=size)
        np.testing.assert_allclose(np.asarray(model(x)), _numpy_nlb(x, model.get_layer("nlb")), atol=1e-5)


def test_rejects_bad_arguments():
    for kwargs, text in (({"inter_channels": 0}, "inter_channels=0"),
                         ({"inter_channels": 2.0}, "inter_channels=2.0"),
                         ({"bn_epsilon": 0}, "bn_epsilon=0"),
                         ({"bn_momentum": 1.0}, "bn_momentum=1.0")):
        with pytest.raises(ValueError, match=text):
            NonLocalBlock(**kwargs)
    with pytest.raises(ValueError, match="expects"):
        NonLocalBlock().build((None, 4, CHANNELS))


def _tiny_model():
    # softmax: run_fit_step's default loss takes probabilities, not logits.
    inputs = keras.Input((FRAMES, SIZE, SIZE, CHANNELS))
    x = NonLocalBlock(inter_channels=2, name="nlb")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="fc_action")(x))


def test_saving_round_trip(tmp_path):
    model = _tiny_model()
    _randomize(model.get_layer("nlb"))
    restored = run_saving_test(model, _clip(seed=5), tmp_path, atol=1e-5)
    assert isinstance(restored.get_layer("nlb"), NonLocalBlock)


def test_fit_step_trains_the_nlb():
    """Every kernel, theta's bias and the BN affine move. Three biases get no gradient by the
    maths (as in PyTorch): phi's adds a per-query constant to the scores (softmax removes it),
    g's and w_z_conv's add a per-channel constant that the training-mode BN mean removes."""
    model = _tiny_model()
    nlb = model.get_layer("nlb")
    nlb.w_z_bn.gamma.assign(np.full(CHANNELS, 0.5, "float32"))  # leave the identity start
    before = {w.path: np.array(w) for w in nlb.trainable_weights}
    run_fit_step(model, _clip(seed=6), np.array([0, 2]))
    moved = {w.path.split("/", 1)[1]: float(np.max(np.abs(np.array(w) - before[w.path])))
             for w in nlb.trainable_weights}
    assert len(moved) == 10
    inert = {"phi/bias", "g/bias", "w_z_conv/bias"}
    assert all(moved[name] > 1e-6 for name in moved if name not in inert), moved
    assert moved["phi/bias"] < 1e-6
