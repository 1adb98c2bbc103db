import numpy as np
import pytest

from harness import identity_backbone, run_saving_test, run_task_test
from keras_bert3d.models.video_classifier import VideoClassifier


def _features(batch=2, steps=4, size=3, channels=16, seed=0):
    return np.abs(np.random.default_rng(seed).normal(size=(batch, steps, size, size, channels))).astype("float32")


TINY = dict(num_heads=2, lstm_hidden_dim=6, head_hidden_dim=None)


@pytest.mark.parametrize("pooling,hidden", [("bert", None), ("tgap", None), ("lstm", None),
                                            ("concat", 12), ("nonlocal_concat", 10)])
def test_single_pathway_poolings(pooling, hidden, tmp_path):
    x = _features()
    kwargs = dict(TINY, backbone=identity_backbone([x.shape[1:]]), num_classes=5, pooling=pooling,
                  head_hidden_dim=hidden)
    model = run_task_test(VideoClassifier, kwargs, (x, np.array([1, 3])), (2, 5), tmp_path)
    if hidden:
        assert model.get_layer("classifier_hidden").units == hidden


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_two_pathways(fusion, tmp_path):
    slow, fast = _features(steps=2, channels=16), _features(steps=8, channels=8, seed=1)
    kwargs = dict(backbone=identity_backbone([slow.shape[1:], fast.shape[1:]]), num_classes=4, pooling="bert",
                  fusion=fusion, num_heads=2 if fusion == "late" else 4)
    model = run_task_test(VideoClassifier, kwargs, ([slow, fast], np.array([0, 3])), (2, 4), tmp_path)
    berts = model.bert_layers()
    if fusion == "early":
        assert list(berts) == ["bert"]
        # fast tokens are averaged down to the slow token count, then concatenated on features
        assert tuple(berts["bert"].input.shape) == (None, 2, 24)
    else:
        assert sorted(berts) == ["bert_fast", "bert_slow"]
        assert tuple(berts["bert_fast"].input.shape) == (None, 8, 8)
        assert tuple(model.get_layer("cls_concat").output.shape) == (None, 24)


def test_two_pathway_tgap_concatenates_slow_first():
    slow, fast = _features(steps=2, channels=6), _features(steps=8, channels=3, seed=1)
    model = VideoClassifier(identity_backbone([slow.shape[1:], fast.shape[1:]]), 3, pooling="tgap")
    pooled = np.asarray(model.get_layer("tgap_concat").output.shape)
    assert pooled[-1] == 9
    sub = np.asarray(model.get_layer("tgap")(slow))
    np.testing.assert_allclose(sub, slow.mean(axis=(1, 2, 3)), atol=1e-6)


def test_attention_model():
    x = _features()
    model = VideoClassifier(identity_backbone([x.shape[1:]]), 5, num_heads=2)
    outputs = model.attention_model()(x)
    np.testing.assert_allclose(np.asarray(outputs["logits"]), np.asarray(model(x)), atol=1e-6)
    scores = np.asarray(outputs["bert"])
    assert scores.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)


def test_attention_model_needs_bert():
    x = _features()
    model = VideoClassifier(identity_backbone([x.shape[1:]]), 5, pooling="tgap")
    with pytest.raises(ValueError, match="pooling='bert'"):
        model.attention_model()


@pytest.mark.parametrize("kwargs,match", [
    ({"pooling": "max"}, "pooling"), ({"num_classes": 0}, "num_classes"), ({"dropout": 1.0}, "dropout"),
    ({"fusion": "early"}, "fusion"),
])
def test_bad_arguments(kwargs, match):
    args = dict(num_classes=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        VideoClassifier(identity_backbone([(4, 3, 3, 16)]), **args)


def test_two_pathway_bert_needs_fusion():
    with pytest.raises(ValueError, match="fusion"):
        VideoClassifier(identity_backbone([(2, 3, 3, 16), (8, 3, 3, 8)]), 3, pooling="bert")
    with pytest.raises(ValueError, match="two-pathway"):
        VideoClassifier(identity_backbone([(2, 3, 3, 16), (8, 3, 3, 8)]), 3, pooling="lstm")


def test_dropout_active_only_in_training():
    x = _features()
    model = VideoClassifier(identity_backbone([x.shape[1:]]), 5, pooling="tgap", dropout=0.5)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=True)))


def test_attention_model_after_reload(tmp_path):
    x = _features()
    model = VideoClassifier(identity_backbone([x.shape[1:]]), 5, num_heads=2)
    restored = run_saving_test(model, x, tmp_path)
    a = model.attention_model()(x)
    b = restored.attention_model()(x)
    np.testing.assert_allclose(np.asarray(a["bert"]), np.asarray(b["bert"]), atol=1e-6)
