"""BERTPooling at the widths no fixture covers (I3D-bert2: d=1024; SlowFast early: d=640, d_k=80),
against a float64 NumPy transcription of REFERENCE.md section 2.2, fed the reference-named weights."""
import numpy as np
import pytest

from keras_bert3d.convert.bert import bert_map
from keras_bert3d.layers.bert_pooling import BERTPooling


def _layer_norm(x, a, b, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    std = x.std(-1, ddof=1, keepdims=True)
    return a * (x - mean) / (std + eps) + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_bert(state, x, heads, layers, prefix="bert."):
    w = {k[len(prefix):]: v.astype(np.float64) for k, v in state.items()}
    batch = x.shape[0]
    h = np.concatenate([np.repeat(w["clsToken"], batch, 0), x.astype(np.float64)], 1)
    h = h + w["embedding.learnedPosition.pe"]
    for i in range(layers):
        p = f"transformer_blocks.{i}."
        y = _layer_norm(h, w[p + "input_sublayer.norm.a_2"], w[p + "input_sublayer.norm.b_2"])
        q, k, v = (y @ w[f"{p}attention.linear_layers.{j}.weight"].T + w[f"{p}attention.linear_layers.{j}.bias"]
                   for j in range(3))
        d = q.shape[-1]
        dk = d // heads
        split = lambda t: t.reshape(batch, -1, heads, dk).transpose(0, 2, 1, 3)  # noqa: E731
        scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(dk)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        att = (probs @ split(v)).transpose(0, 2, 1, 3).reshape(batch, -1, d)
        h = h + att @ w[p + "attention.output_linear.weight"].T + w[p + "attention.output_linear.bias"]
        y = _layer_norm(h, w[p + "output_sublayer.norm.a_2"], w[p + "output_sublayer.norm.b_2"])
        y = _gelu(y @ w[p + "feed_forward.w_1.weight"].T + w[p + "feed_forward.w_1.bias"])
        h = h + y @ w[p + "feed_forward.w_2.weight"].T + w[p + "feed_forward.w_2.bias"]
    return h


@pytest.mark.parametrize("dim,tokens,layers,initializer", [(1024, 8, 1, "bert2"), (640, 8, 1, "bert5"),
                                                          (256, 6, 3, "bert5")])
def test_matches_numpy_reference(dim, tokens, layers, initializer):
    rng = np.random.default_rng(dim)
    x = np.abs(rng.normal(size=(2, tokens, dim))).astype(np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    layer = BERTPooling(num_heads=8, num_layers=layers, initializer=initializer)
    layer.build(x.shape)
    for var in layer.weights:  # non-trivial norms and biases
        if var.path.endswith(("gamma", "beta", "bias")):
            var.assign(rng.uniform(0.5, 1.5, size=var.shape).astype(np.float32) if var.path.endswith("gamma")
                       else rng.normal(0, 0.1, size=var.shape).astype(np.float32))
    state = bert_map(layer, "bert.").export()
    expected = reference_bert(state, x, 8, layers)
    cls, seq = layer(x, return_sequence=True)
    np.testing.assert_allclose(np.asarray(seq), expected, atol=2e-5)
    np.testing.assert_allclose(np.asarray(cls), expected[:, 0], atol=2e-5)
