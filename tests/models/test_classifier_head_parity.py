"""The reference heads (everything after the backbone), through VideoClassifier and the converter."""
import keras
import numpy as np
import pytest

from harness import assert_close, fixture_weights, identity_backbone, load_fixture, ncthw_to_nthwc
from keras_bert3d.convert.checkpoint import head_weight_map
from keras_bert3d.models.video_classifier import VideoClassifier


def _classifier(feature_maps, **kwargs):
    backbone = identity_backbone([f.shape[1:] for f in feature_maps])
    return VideoClassifier(backbone, 51, **kwargs)


def _load(model, arrays):
    report = head_weight_map(model).load(fixture_weights(arrays), strict=False)
    assert not report.missing, report.missing
    return report


def test_r2plus1d_bert_head():
    arrays, tol = load_fixture("r2plus1d_bert_head")
    x = ncthw_to_nthwc(arrays["input"])
    model = _classifier([x], pooling="bert")
    _load(model, arrays)
    assert_close(model.get_layer("tokens")(x), arrays["mid:tokens"], tol, "tokens")
    assert_close(model(x), arrays["output"], tol)


def test_i3d_bert_head_after_mapper():
    arrays, tol = load_fixture("i3d_bert_head")
    x = ncthw_to_nthwc(arrays["mid:mapper_out"])
    model = _classifier([x], pooling="bert", l2_normalize_tokens=True, bert_initializer="bert2")
    report = head_weight_map(model).load(fixture_weights(arrays))
    assert not report.missing
    assert all(k.startswith("mapper.") for k in report.unexpected)
    assert_close(model.get_layer("tokens")(x), arrays["mid:tokens_l2"], tol, "tokens_l2")
    assert_close(model(x), arrays["output"], tol)


def test_i3d_head_without_l2_misses():
    arrays, tol = load_fixture("i3d_bert_head")
    x = ncthw_to_nthwc(arrays["mid:mapper_out"])
    model = _classifier([x], pooling="bert", l2_normalize_tokens=False, bert_initializer="bert2")
    head_weight_map(model).load(fixture_weights(arrays))
    assert np.max(np.abs(np.asarray(model(x)) - arrays["output"])) > 100 * tol


@pytest.mark.parametrize("name,fusion", [("slowfast_early_head", "early"), ("slowfast_late_head", "late")])
def test_slowfast_heads(name, fusion):
    arrays, tol = load_fixture(name)
    slow, fast = ncthw_to_nthwc(arrays["input_0"]), ncthw_to_nthwc(arrays["input_1"])
    model = _classifier([slow, fast], pooling="bert", fusion=fusion)
    _load(model, arrays)
    if fusion == "early":
        joined = model.get_layer("token_concat")([model.get_layer("slow_tokens")(slow),
                                                  model.get_layer("fast_tokens")(fast)])
        assert_close(joined, arrays["mid:tokens"], tol, "tokens")
    else:
        assert_close(model.get_layer("fast_tokens")(fast), arrays["mid:tokens_fast"], tol, "tokens_fast")
    assert_close(model([slow, fast]), arrays["output"], tol)


def test_resnext_tgap_head():
    arrays, tol = load_fixture("resnext_tgap_head")
    x = ncthw_to_nthwc(arrays["input"])
    model = _classifier([x], pooling="tgap")
    _load(model, arrays)
    assert_close(model.get_layer("tgap")(x), arrays["mid:pooled"], tol, "pooled")
    assert_close(model(x), arrays["output"], tol)


def _strict_load(model, arrays):
    """Every fixture weight loads, none is left over (the fixtures hold only the head)."""
    state = fixture_weights(arrays)
    report = head_weight_map(model).load(state, strict=True)
    assert not report.missing and not report.unexpected and len(report.loaded) == len(state)


def _probe(model, *names):
    return keras.Model(model.input, [model.get_layer(name).output for name in names])


def test_resnext_lstm_head():
    arrays, tol = load_fixture("resnext_lstm_head")
    x = ncthw_to_nthwc(arrays["input"])
    model = _classifier([x], pooling="lstm")
    _strict_load(model, arrays)
    tokens, pooled = _probe(model, "tokens", "lstm")(x, training=False)
    assert_close(tokens, arrays["mid:tokens"], tol, "mid:tokens")
    assert_close(pooled, arrays["mid:lstm_out"][:, -1], tol, "last step of mid:lstm_out")
    assert_close(model(x), arrays["output"], tol)


def test_resnext_nlb_concat_head():
    arrays, tol = load_fixture("resnext_nlb_concat_head")
    x = ncthw_to_nthwc(arrays["input"])
    model = _classifier([x], pooling="nonlocal_concat", head_hidden_dim=1000)
    _strict_load(model, arrays)
    nlb, tokens, flat, linear = _probe(model, "non_local", "tokens", "flatten", "classifier_hidden")(x, training=False)
    assert_close(nlb, ncthw_to_nthwc(arrays["mid:nlb_out"]), tol, "mid:nlb_out")
    assert_close(flat, arrays["mid:flat"], tol, "mid:flat")
    assert_close(linear, arrays["mid:linear_out"], tol, "mid:linear_out")
    logits = model(x)
    assert_close(logits, arrays["output"], tol)
    # Negative control: the same tokens flattened time-major (t, c) miss the reference (the manifest: 0.91).
    time_major = np.reshape(np.asarray(tokens), (len(x), -1))
    wrong = model.get_layer("classifier")(model.get_layer("classifier_hidden")(time_major))
    assert float(np.max(np.abs(np.asarray(wrong) - arrays["output"]))) > 100 * tol
