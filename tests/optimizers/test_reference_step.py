"""One training step, and one step over 2 accumulated micro-batches, against the reference code's own
(tests/fixtures/step_*.npz, made by bench/make_step_fixtures.py from the reference's BERT5 head, R(2+1)D stem,
fc_action and opt/AdamW.py in float64): the recipe's optimizer and loss from the same weights, per tensor, and
the BatchNorm running statistics."""
import os

import keras
import numpy as np
import pytest

from keras_bert3d.convert.bert import bert_map
from keras_bert3d.convert.weight_map import WeightMap
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.models import recipe

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
FIXTURE = os.path.join(FIXTURES, "step_bert5_head.npz")
STATISTICS = ("running_mean", "running_var")


@pytest.fixture
def float64():
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy("float32")


def _head(arrays):
    """BERT5 head + fc_action, loaded from the fixture's before-weights; returns (model, reference key map)."""
    tokens = keras.Input((4, 64))
    bert = BERTPooling(num_heads=8, num_layers=1, dropout=0.0, mask_keep_prob=1.0, initializer="bert5", name="bert")
    fc = keras.layers.Dense(5, name="fc_action")
    model = keras.Model(tokens, fc(bert(tokens)))
    weights = bert_map(bert, "bert.")
    weights.extend(_dense_map(fc))
    report = weights.load({k[2:]: arrays[k] for k in arrays.files if k.startswith("w:")}, strict=True)
    assert not report.missing and not report.unexpected
    return model, weights


def _dense_map(layer):
    weights = WeightMap()
    weights.dense("fc_action", layer)
    return weights


def _relative_step_errors(arrays, weights, tag):
    """Per reference key: max |our step - reference step| / max |reference step|."""
    errors = {}
    for key, (variable, transform) in weights.entries.items():
        if key.endswith(STATISTICS):
            continue
        before, after = (arrays[f"{p}:{key}"] for p in ("w", tag))
        before, after = (transform(a) if transform else a for a in (before, after))
        ours = np.asarray(variable) - before
        errors[key] = float(np.max(np.abs(ours - (after - before))) / np.max(np.abs(after - before)))
    return errors


def _stem(arrays):
    """R(2+1)D's stem (our backbone's first layers, BatchNorm with PyTorch's running-variance rule), average-pooled
    into fc_action; returns (model, reference key map)."""
    from keras_bert3d.convert.r2plus1d import backbone_weight_map
    from keras_bert3d.models.builder import build_model

    backbone = build_model("rgb_r2plus1d_32f_34", 5, num_frames=8, image_size=32, stage_blocks=[1, 1, 1, 1],
                           stage_filters=[8, 8, 16, 16]).backbone
    fc = keras.layers.Dense(5, name="fc_action")
    pooled = keras.layers.GlobalAveragePooling3D()(backbone.get_layer("stem_relu_temporal").output)
    model = keras.Model(backbone.input, fc(pooled))
    weights = WeightMap()
    for key, (variable, transform) in backbone_weight_map(backbone).entries.items():
        if key.startswith("features.0."):
            weights.add(key, variable, transform)
    weights.extend(_dense_map(fc))
    report = weights.load({k[2:]: arrays[k] for k in arrays.files if k.startswith("w:")}, strict=True)
    assert not report.missing and not report.unexpected
    return model, weights


def _train(arrays, optimizer_name, batches, build=_head, channels_last=False):
    model, weights = build(arrays)
    assert all(str(w.dtype) == "float64" for w in model.weights)
    optimizer = recipe.make_optimizer(optimizer_name, model, float(arrays["lr"]), float(arrays["weight_decay"]),
                                      True, len(batches))
    model.compile(optimizer, recipe.make_loss())
    for i in batches:
        x = arrays[f"x{i}"].transpose(0, 2, 3, 4, 1) if channels_last else arrays[f"x{i}"]
        model.train_on_batch(x, arrays[f"y{i}"])
    return weights


# The key projection's bias has a zero gradient in exact arithmetic (the softmax over keys ignores a shift shared by
# all keys): its Adam step is rounding noise divided by epsilon on both sides, compared in units of lr instead.
ZERO_GRADIENT = "bert.transformer_blocks.0.attention.linear_layers.1.bias"


@pytest.mark.parametrize("tag, batches", [("one", [0]), ("acc", [0, 1])])
def test_step_equals_the_reference_step(float64, tag, batches):
    arrays = np.load(FIXTURE)
    weights = _train(arrays, "adamw", batches)
    errors = _relative_step_errors(arrays, weights, tag)
    assert len(errors) == 20
    noise = errors.pop(ZERO_GRADIENT)
    worst = max(errors, key=errors.get)
    # Issue 19 asks for 1e-2; measured max 2.2e-4 (one step) and 1.6e-4 (accumulated), median 5e-6 (elements
    # whose gradient is near epsilon, where Adam's step follows the gradient's last digits).
    assert errors[worst] < 1e-3, (worst, errors[worst])
    variable, transform = weights.entries[ZERO_GRADIENT]
    after = transform(arrays[f"{tag}:{ZERO_GRADIENT}"]) if transform else arrays[f"{tag}:{ZERO_GRADIENT}"]
    assert np.max(np.abs(np.asarray(variable) - after)) < 1e-2 * float(arrays["lr"]), noise


def test_keras_adamw_misses_the_reference_step(float64):
    """The negative control: Keras' AdamW (epsilon before the bias correction) from the same weights."""
    arrays = np.load(FIXTURE)
    errors = _relative_step_errors(arrays, _train(arrays, "keras_adamw", [0]), "one")
    errors.pop(ZERO_GRADIENT)
    assert max(errors.values()) > 0.5  # measured 0.90: steps of tensors with small gradients


@pytest.mark.parametrize("tag, batches", [("one", [0]), ("acc", [0, 1])])
def test_stem_step_and_batch_norm_statistics_equal_the_reference(float64, tag, batches):
    """Convolutions and BatchNorm in training mode: the weights' steps and the running statistics, which move
    on every micro-batch (PyTorch's unbiased variance, momentum 0.9 in torch's convention)."""
    arrays = np.load(os.path.join(FIXTURES, "step_r2plus1d_stem.npz"))
    weights = _train(arrays, "adamw", batches, build=_stem, channels_last=True)
    errors = _relative_step_errors(arrays, weights, tag)
    assert len(errors) == 8
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-3, (worst, errors[worst])  # measured 3.8e-5 (one step), 2.8e-4 (accumulated)
    statistics = [key for key in weights.entries if key.endswith(STATISTICS)]
    assert len(statistics) == 4
    for key in statistics:
        ours, reference = np.asarray(weights.entries[key][0]), arrays[f"{tag}:{key}"]
        assert not np.allclose(reference, arrays[f"w:{key}"])  # they moved
        assert np.max(np.abs(ours - reference)) <= 1e-6 * np.max(np.abs(reference)), key  # measured 3.8e-8
