"""Every preset at a tiny size (the harness's run_preset_test): forward, config and .keras round trips, one fit
step, and the converter's full map."""
import numpy as np
import pytest

from harness import run_fit_step, run_preset_test, run_saving_test
from keras_bert3d.convert.checkpoint import load_reference_weights, model_weight_map
from keras_bert3d.models.builder import build_model, list_models
from keras_bert3d.models.video_classifier import VideoClassifier
from tiny_presets import tiny_overrides


def _clip(model, batch=2, seed=0):
    shape = tuple(model.input.shape[1:])
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


@pytest.mark.parametrize("name", list_models())
def test_tiny_preset(name, tmp_path):
    model, twin, x, logits = run_preset_test(VideoClassifier, name, dict(num_classes=4, **tiny_overrides(name)),
                                             (2, 4))
    assert model.input.shape[-1] == (2 if name.startswith("flow_") else 3)
    logits = np.asarray(logits)
    # The converter's map covers every weight: export in reference names, reload strictly into the twin
    # that the config round trip rebuilt.
    state = model_weight_map(model).export()
    report = load_reference_weights(twin, state, strict=True)
    assert not report.missing and not report.unexpected
    np.testing.assert_allclose(np.asarray(twin(x)), logits, atol=1e-5)
    run_saving_test(model, x, tmp_path, atol=1e-5)


@pytest.mark.parametrize("name", ["rgb_r2plus1d_32f_34_bert10", "flow_resneXt3D64f101_bert10_FRMB",
                                  "rgb_resneXt3D64f101_FRMB_lstm", "flow_I3D64f_bert2_FRAB",
                                  "rgb_slowfast64f_50_bert10_FRMB_early", "rgb_slowfast64f_50_bert10_FRAB_late",
                                  "rgb_slowfast64f_50", "rgb_resneXt3D64f101_FRMB_NLB_concatenation"])
def test_tiny_preset_trains(name):
    model = build_model(name, 4, **tiny_overrides(name))
    run_fit_step(model, _clip(model), np.array([0, 3]))
