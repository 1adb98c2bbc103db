"""Parity of the alternative ResNeXt heads (LSTM; non-local block + channel-major concatenation)
against the reference fixtures resnext_lstm_head and resnext_nlb_concat_head.

The heads are wired here with plain Keras layers; the classifier that composes them
(``flatten="channel_major"``) must reproduce the same expectations.
"""
import keras
import numpy as np
import pytest

from harness import assert_close, fixture_weights, load_fixture, ncthw_to_nthwc
from keras_bert3d.convert.heads import lstm_map, non_local_map
from keras_bert3d.convert.weight_map import WeightMap
from keras_bert3d.layers.lstm_pooling import LSTMPooling
from keras_bert3d.layers.non_local_block import NonLocalBlock


def _dense_weights(model, names):
    weights = WeightMap()
    for name in names:
        weights.dense(name, model.get_layer(name))
    return weights


def _token_pool(x):
    """AvgPool3d((1, H, W)) on a (B, T, H, W, C) map -> (B, T, C) tokens."""
    _, frames, height, width, channels = x.shape
    x = keras.layers.AveragePooling3D((1, height, width), name="avgpool")(x)
    return keras.layers.Reshape((frames, channels), name="tokens")(x)


def _lstm_head(input_shape, num_classes, hidden_dim, num_layers):
    inputs = keras.Input(input_shape)
    tokens = _token_pool(inputs)
    pooled = LSTMPooling(hidden_dim=hidden_dim, num_layers=num_layers, name="lstm")(tokens)
    x = keras.layers.Dropout(0.8, name="dropout")(pooled)
    logits = keras.layers.Dense(num_classes, name="fc_action")(x)
    return keras.Model(inputs, [tokens, pooled, logits])


def _nlb_concat_head(input_shape, num_classes, linear_size, flatten):
    inputs = keras.Input(input_shape)
    frames, channels = input_shape[0], input_shape[-1]
    nlb = NonLocalBlock(name="NLB")(inputs)
    tokens = _token_pool(nlb)  # (B, T, C)
    if flatten == "channel_major":  # the reference's x.view(-1, C * T) on (B, C, T, 1, 1): index c*T + t
        tokens = keras.layers.Permute((2, 1), name="to_channel_major")(tokens)
    flat = keras.layers.Reshape((frames * channels,), name="flatten")(tokens)
    x = keras.layers.Dropout(0.8, name="dropout")(flat)
    linear = keras.layers.Dense(linear_size, name="linear")(x)
    logits = keras.layers.Dense(num_classes, name="fc_action")(linear)
    return keras.Model(inputs, [nlb, flat, linear, logits])


def _load(weights, state_dict):
    report = weights.load(state_dict)
    assert not report.missing, report.summary()
    assert not report.unexpected, report.summary()
    assert len(report.loaded) == len(state_dict)
    return report


def test_resnext_lstm_head_parity():
    arrays, tol = load_fixture("resnext_lstm_head")
    clip = ncthw_to_nthwc(arrays["input"])
    num_classes, hidden_dim = arrays["w:fc_action.weight"].shape
    num_layers = sum(key.startswith("w:lstm.weight_ih_l") for key in arrays)
    model = _lstm_head(clip.shape[1:], num_classes, hidden_dim, num_layers)

    weights = lstm_map(model.get_layer("lstm"), "lstm.")
    weights.extend(_dense_weights(model, ["fc_action"]))
    _load(weights, fixture_weights(arrays))

    tokens, pooled, logits = model(clip, training=False)
    assert_close(tokens, arrays["mid:tokens"], tol, "mid:tokens")
    assert_close(pooled, arrays["mid:lstm_out"][:, -1], tol, "last step of mid:lstm_out")
    err = assert_close(logits, arrays["output"], tol, "output")
    print(f"resnext_lstm_head max |diff| {err:.3g} (tol {tol:.1g})")


@pytest.mark.parametrize("flatten", ["channel_major", "time_major"])
def test_resnext_nlb_concat_head_parity(flatten):
    arrays, tol = load_fixture("resnext_nlb_concat_head")
    clip = ncthw_to_nthwc(arrays["input"])
    linear_size = arrays["w:linear.weight"].shape[0]
    num_classes = arrays["w:fc_action.weight"].shape[0]
    model = _nlb_concat_head(clip.shape[1:], num_classes, linear_size, flatten)

    weights = non_local_map(model.get_layer("NLB"), "NLB.")
    weights.extend(_dense_weights(model, ["linear", "fc_action"]))
    _load(weights, fixture_weights(arrays))

    nlb, flat, linear, logits = model(clip, training=False)
    assert_close(nlb, ncthw_to_nthwc(arrays["mid:nlb_out"]), tol, "mid:nlb_out")
    if flatten == "time_major":
        # Negative control: the (t, c) order must be caught (the manifest measures 0.91).
        assert float(np.max(np.abs(np.asarray(logits) - arrays["output"]))) > 100 * tol
        return
    assert_close(flat, arrays["mid:flat"], tol, "mid:flat")
    assert_close(linear, arrays["mid:linear_out"], tol, "mid:linear_out")
    err = assert_close(logits, arrays["output"], tol, "output")
    print(f"resnext_nlb_concat_head max |diff| {err:.3g} (tol {tol:.1g})")


def test_nlb_scale_is_sqrt_of_positions():
    """Dividing by sqrt(channels) instead of sqrt(P) must break mid:nlb_out (guards the formula)."""
    arrays, tol = load_fixture("resnext_nlb_concat_head")
    clip = ncthw_to_nthwc(arrays["input"])
    layer = NonLocalBlock(name="NLB")
    layer.build(clip.shape)
    state = {k: v for k, v in fixture_weights(arrays).items() if k.startswith("NLB.")}
    _load(non_local_map(layer, "NLB."), state)
    np.testing.assert_allclose(np.asarray(layer(clip, training=False)),
                               ncthw_to_nthwc(arrays["mid:nlb_out"]), atol=tol)
    num_positions = int(np.prod(clip.shape[1:4]))
    channels = clip.shape[-1]
    # Rescaling theta by sqrt(P / C) turns the block's /sqrt(P) into /sqrt(C).
    scale = np.sqrt(num_positions / channels)
    layer.theta.kernel.assign(layer.theta.kernel.numpy() * scale)
    layer.theta.bias.assign(layer.theta.bias.numpy() * scale)
    out = np.asarray(layer(clip, training=False))
    assert np.max(np.abs(out - ncthw_to_nthwc(arrays["mid:nlb_out"]))) > 100 * tol
