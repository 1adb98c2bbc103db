import json

import keras
import numpy as np
import pytest

from harness import assert_close, fixture_weights, load_fixture, run_layer_test, run_saving_test
from keras_bert3d.convert.bert import bert_map, bert_param_count
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.layers.reference_layer_norm import ReferenceLayerNorm


def _tokens(batch=2, n=4, d=16, seed=0):
    return np.abs(np.random.default_rng(seed).normal(size=(batch, n, d))).astype("float32")


def test_reference_layer_norm_fixture():
    arrays, tol = load_fixture("layer_norm")
    layer = ReferenceLayerNorm(1e-6)
    layer.build(arrays["input"].shape)
    layer.gamma.assign(arrays["w:a_2"])
    layer.beta.assign(arrays["w:b_2"])
    assert_close(layer(arrays["input"]), arrays["output"], tol)
    # The small-variance rows separate eps-on-std from eps-on-variance.
    assert_close(layer(arrays["input_smallvar"]), arrays["output_smallvar"], tol, "output_smallvar")


def test_reference_layer_norm_differs_from_standard():
    x = np.random.default_rng(1).normal(size=(3, 64)).astype("float32")
    ours = np.asarray(ReferenceLayerNorm()(x))
    standard = np.asarray(keras.layers.LayerNormalization(epsilon=1e-6)(x))
    np.testing.assert_allclose(ours, standard * np.sqrt(63 / 64), atol=1e-5)
    assert np.max(np.abs(ours - standard)) > 1e-3


@pytest.mark.parametrize("name,prefix,initializer", [
    ("bert5_small", "", "bert5"),
    ("bert5_r2plus1d", "bert.", "bert5"),
    ("bert2_i3d_small", "bert.", "bert2"),
    ("bert5_slowfast_fast", "bert_fast.", "bert5"),
])
def test_bert_fixtures(name, prefix, initializer):
    arrays, tol = load_fixture(name)
    x = arrays["input"]
    num_layers = 1 + max(int(k.split("transformer_blocks.")[1].split(".")[0])
                         for k in arrays if "transformer_blocks." in k)
    layer = BERTPooling(num_heads=8, num_layers=num_layers, initializer=initializer)
    layer.build(x.shape)
    report = bert_map(layer, prefix).load(fixture_weights(arrays), strict=True)
    assert not report.missing and not report.unexpected
    cls, seq = layer(x, return_sequence=True)
    assert_close(seq, arrays["output"], tol, "sequence")
    assert_close(cls, arrays["output_cls"], tol, "cls")


def test_standard_norm_misses_the_fixture():
    arrays, tol = load_fixture("bert5_small")
    layer = BERTPooling(num_heads=8, num_layers=2, norm="standard")
    layer.build(arrays["input"].shape)
    bert_map(layer, "").load(fixture_weights(arrays), strict=True)
    err = np.max(np.abs(np.asarray(layer(arrays["input"])) - arrays["output_cls"]))
    assert err > 100 * tol  # the reference LayerNorm matters


@pytest.mark.parametrize("dim,tokens,layers", [(512, 4, 1), (512, 8, 1), (256, 32, 1), (640, 8, 1), (64, 4, 2)])
def test_parameter_count_formula(dim, tokens, layers):
    layer = BERTPooling(num_heads=8, num_layers=layers)
    layer.build((None, tokens, dim))
    assert layer.count_params() == bert_param_count(dim, tokens, layers)


def test_reference_counts():
    assert bert_param_count(512, 4) == 3_155_456
    assert bert_param_count(640, 8) == 4_929_920
    assert bert_param_count(1024, 8) == 12_606_464


def test_shapes_and_outputs():
    x = _tokens(2, 4, 16)
    layer = BERTPooling(num_heads=2, initializer="bert2")
    run_layer_test(layer, x, (2, 16))
    cls, seq, scores = layer(x, return_sequence=True, return_attention_scores=True)
    assert tuple(seq.shape) == (2, 5, 16) and tuple(scores.shape) == (2, 2, 5, 5)
    np.testing.assert_allclose(np.asarray(cls), np.asarray(seq)[:, 0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(scores).sum(-1), 1.0, atol=1e-5)


def test_key_masking_only_in_training():
    x = _tokens(64, 6, 16)
    layer = BERTPooling(num_heads=2, dropout=0.0, mask_keep_prob=0.5, seed=3)
    _, scores = layer(x, training=True, return_attention_scores=True)
    scores = np.asarray(scores)
    dropped = scores[:, :, :, 1:] < 1e-12  # keys with zero probability
    # A key is dropped for every query and head of a sample, never the CLS key.
    assert np.all(scores[:, :, :, 0] > 0)
    per_sample = dropped[:, 0, 0, :]
    assert np.all(dropped == per_sample[:, None, None, :])
    assert 0.35 < per_sample.mean() < 0.65
    # Inference: nothing masked, deterministic.
    a = np.asarray(layer(x, training=False))
    b = np.asarray(layer(x, training=False))
    np.testing.assert_array_equal(a, b)
    _, s_eval = layer(x, return_attention_scores=True)
    assert np.all(np.asarray(s_eval) > 0)


def test_training_is_random_and_seeded():
    x = _tokens(2, 4, 16)
    layer = BERTPooling(num_heads=2, seed=7)
    layer.build(x.shape)
    a = np.asarray(layer(x, training=True))
    b = np.asarray(layer(x, training=True))
    assert not np.allclose(a, b)


def test_initializers():
    bert5 = BERTPooling(num_heads=8, initializer="bert5")
    bert5.build((None, 8, 256))
    bound = 1 / np.sqrt(256)
    q = np.asarray(bert5.attentions[0].query_dense.kernel)
    assert np.max(np.abs(q)) <= bound and np.std(q) > 0.5 * bound / np.sqrt(3)
    assert abs(np.std(np.asarray(bert5.cls_token)) - 0.02) < 0.01
    bert2 = BERTPooling(num_heads=8, initializer="bert2")
    bert2.build((None, 8, 256))
    assert np.all(np.asarray(bert2.attentions[0].query_dense.bias) == 0)
    assert abs(np.std(np.asarray(bert2.ffn_intermediates[0].kernel)) - 0.02) < 0.003
    assert abs(np.std(np.asarray(bert2.position_embedding)) - 256 ** -0.5) < 0.01


@pytest.mark.parametrize("kwargs", [
    {"num_heads": 0}, {"num_layers": 0}, {"dropout": 1.5}, {"mask_keep_prob": 0.0},
    {"norm": "batch"}, {"initializer": "xavier"},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        BERTPooling(**kwargs)


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="divisible"):
        BERTPooling(num_heads=3)(np.zeros((1, 4, 16), "float32"))


def test_saving_and_fit(tmp_path):
    inputs = keras.Input((4, 16))
    pooled = BERTPooling(num_heads=2, name="bert")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(pooled))
    x = _tokens(2, 4, 16)
    run_saving_test(model, x, tmp_path)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # probabilities clip: no gradient
    before = np.asarray(model.get_layer("bert").cls_token).copy()
    model.fit(x, np.array([0, 2]), epochs=1, verbose=0)
    assert not np.allclose(before, np.asarray(model.get_layer("bert").cls_token))
    config = model.get_layer("bert").get_config()
    assert json.loads(json.dumps(config))["mask_keep_prob"] == 0.8
