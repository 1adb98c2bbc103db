"""One training step, and one step over 2 accumulated micro-batches, against the reference code's own
(tests/fixtures/step_*.npz, made by bench/make_step_fixtures.py from the reference's BERT5 head, R(2+1)D stem,
I3D Conv3d_1a + Inception module, SlowFast s1 + s1_fuse + s2, fc_action and opt/AdamW.py in float64): the
recipe's optimizer and loss from the same weights, per tensor, and the BatchNorm running statistics."""
import os

import keras
import numpy as np
import pytest

from keras_bert3d.convert.bert import bert_map
from keras_bert3d.convert.weight_map import WeightMap
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.layers.max_pooling3d import MaxPooling3D
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
    weights = _subset(backbone_weight_map(backbone), ("features.0.",))
    weights.extend(_dense_map(fc))
    _load(weights, arrays)
    return model, weights


def _subset(weight_map, prefixes):
    """The entries of ``weight_map`` under ``prefixes``, as a new WeightMap."""
    weights = WeightMap()
    for key, (variable, transform) in weight_map.entries.items():
        if key.startswith(prefixes):
            weights.add(key, variable, transform)
    return weights


def _load(weights, arrays):
    report = weights.load({k[2:]: arrays[k] for k in arrays.files if k.startswith("w:")}, strict=True)
    assert not report.missing and not report.unexpected


def _i3d(arrays):
    """I3D's Conv3d_1a (Unit3D, 3 -> 8), MaxPool3d_2a and an InceptionModule (BatchNorm eps 1e-3, Keras
    momentum 0.99 = torch's 0.01), average-pooled into fc_action; returns (model, reference key map)."""
    from keras_bert3d.convert.i3d import inception_map, unit_map
    from keras_bert3d.layers.inception_module import InceptionModule
    from keras_bert3d.layers.unit3d import Unit3D

    clip = keras.Input((8, 32, 32, 3))
    conv = Unit3D(8, 7, strides=2, name="conv3d_1a")
    pooled = MaxPooling3D((1, 3, 3), strides=(1, 2, 2), padding="same")(conv(clip))  # I3D's own pool layer
    inception = InceptionModule([4, 4, 8, 2, 4, 4], name="mixed")
    fc = keras.layers.Dense(5, name="fc_action")
    model = keras.Model(clip, fc(keras.layers.GlobalAveragePooling3D()(inception(pooled))))
    weights = unit_map(conv, "features.0")
    weights.extend(inception_map(inception, "features.2"))
    weights.extend(_dense_map(fc))
    _load(weights, arrays)
    return model, weights


def _slowfast(arrays):
    """SlowFast's stems, first fuse and s2 (our backbone at slow width 16, one block per stage), both pathways
    average-pooled and concatenated slow first into fc_action; returns (model, reference key map)."""
    from keras_bert3d.backbones.slowfast_backbone import SlowFastBackbone
    from keras_bert3d.convert.slowfast import backbone_weight_map

    backbone = SlowFastBackbone(slow_width=16, stage_blocks=[1, 1, 1, 1], num_frames=16, image_size=24)
    pooled = [keras.layers.GlobalAveragePooling3D()(backbone.stage_outputs[f"{pathway}_stage1"])
              for pathway in ("slow", "fast")]
    fc = keras.layers.Dense(5, name="fc_action")
    model = keras.Model(backbone.input, fc(keras.layers.Concatenate()(pooled)))
    weights = _subset(backbone_weight_map(backbone), ("model.s1.", "model.s1_fuse.", "model.s2."))
    weights.extend(_dense_map(fc))
    _load(weights, arrays)
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


# name: (sub-model, weight tensors, BatchNorm statistics). Measured max relative step error (one step,
# accumulated) and statistics error: R(2+1)D 3.8e-5, 2.8e-4, 3.8e-8; I3D 2.1e-4, 1.3e-4, 5.2e-8; SlowFast
# 5.4e-5, 2.8e-4, 4.2e-8.
BACKBONES = {
    "r2plus1d_stem": (_stem, 8, 4),
    "i3d_inception": (_i3d, 23, 14),
    "slowfast_s1_s2": (_slowfast, 35, 22),
}


TAGS = {"one": [0], "acc": [0, 1]}


def _backbone_errors(name):
    """{tag: (worst key, its relative step error, max relative statistics error, #weights, #statistics)}, after
    training the sub-model ``name`` from the fixture's weights; statistics that did not move count as errors."""
    build = BACKBONES[name][0]
    arrays = np.load(os.path.join(FIXTURES, f"step_{name}.npz"))
    results = {}
    for tag, batches in TAGS.items():
        weights = _train(arrays, "adamw", batches, build=build, channels_last=True)
        errors = _relative_step_errors(arrays, weights, tag)
        worst = max(errors, key=errors.get)
        statistics = [key for key in weights.entries if key.endswith(STATISTICS)]
        moved = [np.inf if np.allclose(arrays[f"{tag}:{key}"], arrays[f"w:{key}"]) else
                 float(np.max(np.abs(np.asarray(weights.entries[key][0]) - arrays[f"{tag}:{key}"]))
                       / np.max(np.abs(arrays[f"{tag}:{key}"]))) for key in statistics]
        results[tag] = (worst, errors[worst], max(moved), len(errors), len(statistics))
    return results


@pytest.mark.parametrize("name", list(BACKBONES))
@pytest.mark.parametrize("tag", list(TAGS))
def test_backbone_step_and_batch_norm_statistics_equal_the_reference(float64, name, tag):
    """Convolutions, max-pools and BatchNorm in training mode: the weights' steps and the running statistics,
    which move on every micro-batch (PyTorch's unbiased variance, each backbone's epsilon and momentum)."""
    results = _backbone_errors(name)
    worst, error, statistics_error, num_weights, num_statistics = results[tag]
    print(name, tag, "step", worst, error, "statistics", statistics_error)
    assert (num_weights, num_statistics) == BACKBONES[name][1:]
    assert error < 1e-3, (worst, error)  # issue 19 asks for 1e-2
    assert statistics_error <= 1e-6  # they moved, and as the reference's
