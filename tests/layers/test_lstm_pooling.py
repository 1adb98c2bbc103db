"""LSTMPooling: shapes, PyTorch parameters, equivalence with a hand-written LSTM, saving, training."""
import pathlib

import keras
import numpy as np
import pytest

from harness import run_fit_step, run_layer_test, run_saving_test, run_serialization_test
from keras_bert3d.layers.lstm_pooling import LSTMPooling

KEYS = pathlib.Path(__file__).parents[1] / "fixtures" / "keys" / "rgb_resneXt3D64f101_FRMB_lstm.txt"
BATCH, TOKENS, DIM, HIDDEN, LAYERS = 2, 4, 6, 5, 2


def _tokens(seed=0, batch=BATCH, tokens=TOKENS, dim=DIM):
    return np.random.default_rng(seed).normal(size=(batch, tokens, dim)).astype("float32")


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm(x, params, hidden):
    """PyTorch nn.LSTM (batch_first, zero state) in float64 from torch-layout weights.

    ``params``: per layer (weight_ih (4h, in), weight_hh (4h, h), bias_ih (4h,), bias_hh (4h,)).
    Returns the top layer's full sequence (B, N, h).
    """
    seq = x.astype("float64")
    for w_ih, w_hh, b_ih, b_hh in params:
        h = np.zeros((seq.shape[0], hidden))
        c = np.zeros((seq.shape[0], hidden))
        outputs = []
        for t in range(seq.shape[1]):
            z = seq[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, g, o = (z[:, j * hidden:(j + 1) * hidden] for j in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            outputs.append(h)
        seq = np.stack(outputs, axis=1)
    return seq


def _torch_layout(layer):
    return [(np.asarray(layer.kernels[k]).T, np.asarray(layer.recurrent_kernels[k]).T,
             np.asarray(layer.input_biases[k]), np.asarray(layer.recurrent_biases[k]))
            for k in range(layer.num_layers)]


def _tiny_model():
    # softmax: run_fit_step's default loss takes probabilities, not logits.
    inputs = keras.Input((TOKENS, DIM))
    x = LSTMPooling(hidden_dim=HIDDEN, num_layers=LAYERS, name="lstm")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="fc_action")(x)
    return keras.Model(inputs, outputs)


def test_shapes_and_serialization():
    layer = LSTMPooling(hidden_dim=HIDDEN, num_layers=LAYERS)
    out = run_layer_test(layer, _tokens(), (BATCH, HIDDEN))
    assert np.all(np.abs(np.asarray(out)) < 1.0)  # h = o * tanh(c)
    config = run_serialization_test(layer).get_config()
    assert config["hidden_dim"] == HIDDEN and config["num_layers"] == LAYERS


def test_parameters_follow_pytorch_layout():
    layer = LSTMPooling(hidden_dim=HIDDEN, num_layers=LAYERS)
    layer.build((None, TOKENS, DIM))
    expected = []
    in_dim = DIM
    for _ in range(LAYERS):
        expected += [(in_dim, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN), (4 * HIDDEN,), (4 * HIDDEN,)]
        in_dim = HIDDEN
    assert [tuple(w.shape) for w in layer.weights] == expected
    assert len(layer.trainable_weights) == 4 * LAYERS
    bound = 1.0 / np.sqrt(HIDDEN)
    for w in layer.weights:
        values = np.asarray(w)
        assert np.all(np.abs(values) <= bound) and np.std(values) > 0.2 * bound


def test_reference_parameter_count():
    """2-layer 512 -> 450 LSTM: the reference's 3,358,800 parameters (two biases per layer)."""
    layer = LSTMPooling(hidden_dim=450, num_layers=2)
    layer.build((None, 4, 512))
    assert layer.count_params() == 3_358_800
    # The same count from the reference's state-dict key list.
    from_keys = 0
    for line in KEYS.read_text().splitlines():
        if line.startswith("lstm."):
            shape = line.split("(", 1)[1].rstrip(")").split(",")
            from_keys += int(np.prod([int(s) for s in shape if s.strip()]))
    assert layer.count_params() == from_keys


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_equals_numpy_lstm_with_two_biases(num_layers):
    layer = LSTMPooling(hidden_dim=HIDDEN, num_layers=num_layers)
    x = _tokens(seed=3)
    layer.build(x.shape)
    _randomize(layer, seed=num_layers)
    expected = _numpy_lstm(x, _torch_layout(layer), HIDDEN)[:, -1]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)


def test_both_biases_enter_the_gates():
    layer = LSTMPooling(hidden_dim=HIDDEN, num_layers=1)
    x = _tokens(seed=4)
    layer.build(x.shape)
    _randomize(layer)
    before = np.asarray(layer(x))
    bias_hh = layer.recurrent_biases[0]
    bias_hh.assign(np.asarray(bias_hh) + 0.5)
    assert np.max(np.abs(np.asarray(layer(x)) - before)) > 1e-3


def test_equals_keras_lstm_with_summed_bias():
    """Keras' own LSTM (gate order i, f, c, o) with bias = b_ih + b_hh gives the same last state."""
    layer = LSTMPooling(hidden_dim=HIDDEN, num_layers=LAYERS)
    x = _tokens(seed=5)
    layer.build(x.shape)
    _randomize(layer)
    seq = x
    for k in range(LAYERS):
        reference = keras.layers.LSTM(HIDDEN, return_sequences=True)
        reference.build(seq.shape)
        reference.cell.kernel.assign(np.asarray(layer.kernels[k]))
        reference.cell.recurrent_kernel.assign(np.asarray(layer.recurrent_kernels[k]))
        reference.cell.bias.assign(np.asarray(layer.input_biases[k]) + np.asarray(layer.recurrent_biases[k]))
        seq = np.asarray(reference(seq))
    np.testing.assert_allclose(np.asarray(layer(x)), seq[:, -1], atol=1e-5)


def test_rejects_bad_arguments():
    for kwargs, text in (({"hidden_dim": 0}, "hidden_dim=0"), ({"hidden_dim": 4.5}, "hidden_dim=4.5"),
                         ({"num_layers": 0}, "num_layers=0"), ({"num_layers": "2"}, "num_layers='2'")):
        with pytest.raises(ValueError, match=text):
            LSTMPooling(**kwargs)
    with pytest.raises(ValueError, match="static number of tokens"):
        LSTMPooling(hidden_dim=4).build((None, None, DIM))
    with pytest.raises(ValueError, match="expects tokens"):
        LSTMPooling(hidden_dim=4).build((None, DIM))


def test_saving_round_trip(tmp_path):
    model = _tiny_model()
    _randomize(model.get_layer("lstm"))
    restored = run_saving_test(model, _tokens(seed=6), tmp_path)
    assert isinstance(restored.get_layer("lstm"), LSTMPooling)


def test_fit_step_trains_every_lstm_weight():
    model = _tiny_model()
    lstm = model.get_layer("lstm")
    before = [np.array(w) for w in lstm.trainable_weights]
    run_fit_step(model, _tokens(seed=7), np.array([0, 2]))
    after = [np.array(w) for w in lstm.trainable_weights]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
