"""from_preset / save_to_preset (keras-hub's folder layout) and compile()'s reference defaults."""
import json
import os

import keras
import numpy as np
import pytest

from harness import random_clip, run_fit_step, run_preset_test
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.models.video_classifier import VideoClassifier
from tiny_presets import TINY_R2PLUS1D, tiny_overrides

NAME = "rgb_r2plus1d_32f_34_bert10"
FILES = ["config.json", "metadata.json", "model.weights.h5", "preprocessor.json", "task.json", "task.weights.h5"]


def _trained(num_classes=4):
    model = VideoClassifier.from_preset(NAME, num_classes=num_classes, **tiny_overrides(NAME))
    rng = np.random.default_rng(0)
    for w in model.weights:  # every weight away from its initial value, BN statistics included
        w.assign(w + rng.uniform(0.1, 0.2, tuple(w.shape)).astype(w.dtype))
    return model


def test_save_to_preset_and_back_gives_identical_logits(tmp_path):
    model = _trained()
    x = random_clip(2, 8, 32)
    folder = str(tmp_path / "preset")
    model.save_to_preset(folder)
    assert sorted(os.listdir(folder)) == FILES
    assert json.load(open(os.path.join(folder, "config.json")))["registered_name"] == "keras_bert3d>R2Plus1DBackbone"
    restored = VideoClassifier.from_preset(folder)
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(model(x)))
    assert restored.preprocessing == model.preprocessing and restored.name == model.name
    backbone = R2Plus1DBackbone.from_preset(folder)
    np.testing.assert_array_equal(np.asarray(backbone(x)), np.asarray(model.backbone(x)))
    # Another class count: a new head, every other weight (BERT included) from the folder.
    rehead = VideoClassifier.from_preset(folder, num_classes=7, dropout=0.5)
    assert rehead.num_classes == 7 and rehead.get_config()["dropout"] == 0.5
    for layer in ("bert", "backbone"):
        for a, b in zip(rehead.get_layer(layer).weights, model.get_layer(layer).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="num_hedas"):
        VideoClassifier.from_preset(folder, num_hedas=2)


def test_named_presets_and_listing():
    assert len(VideoClassifier.presets) == 27 and NAME in R2Plus1DBackbone.presets
    assert "rgb_I3D64f" not in R2Plus1DBackbone.presets
    with pytest.raises(ValueError, match="num_classes"):
        VideoClassifier.from_preset(NAME)
    backbone, *_ = run_preset_test(R2Plus1DBackbone, NAME, TINY_R2PLUS1D, (2, 1, 2, 2, 16))
    assert backbone.get_config()["num_frames"] == 8
    with pytest.raises(ValueError, match=r"Unknown override\(s\) \['num_heads'\]"):  # a classifier argument
        R2Plus1DBackbone.from_preset(NAME, num_heads=2)


def test_compile_defaults_to_the_reference_recipe():
    model = VideoClassifier.from_preset(NAME, num_classes=4, **tiny_overrides(NAME))
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.AdamW) and model.optimizer.weight_decay == pytest.approx(1e-3)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-5)
    assert model.loss.get_config()["from_logits"] is True
    x, y = random_clip(2, 8, 32), np.array([0, 3])
    history = model.fit(x, y, epochs=1, verbose=0).history
    assert {"loss", "top1", "top5"} <= set(history) and np.isfinite(history["loss"][0])
    tgap = VideoClassifier.from_preset("rgb_r2plus1d_32f_34", num_classes=4, **tiny_overrides(NAME))
    tgap.compile()
    assert type(tgap.optimizer).__name__ == "ReferenceSGD" and tgap.recipe == "sgd"
    tgap.compile(optimizer=keras.optimizers.SGD(0.1))  # explicit arguments win
    assert type(tgap.optimizer) is keras.optimizers.SGD
    run_fit_step(tgap, x, y)
