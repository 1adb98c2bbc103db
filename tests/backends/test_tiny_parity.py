"""Every preset at tiny size gives TensorFlow's logits on JAX and PyTorch for the same .weights.h5, and
`.keras` files cross backends (TF -> JAX/PyTorch -> TF)."""
import os

import numpy as np
import pytest

from harness_backends import BACKENDS, TOLERANCE, check, relative_difference, run_backends, write_reference
from keras_bert3d.models.builder import build_model, list_models
from tiny_presets import tiny_overrides

NUM_CLASSES = 4
# One preset of each family travels as a .keras file (ResNeXt: grouped convolutions; SlowFast: two BERTs).
KERAS_FILES = ("rgb_r2plus1d_32f_34_bert10", "rgb_resneXt3D64f101_bert10_FRMB", "flow_I3D64f_bert2_FRAB",
               "rgb_slowfast64f_50_bert10_FRAB_late")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_backends")
    presets = {name: tiny_overrides(name) for name in list_models()}
    write_reference(folder, presets, NUM_CLASSES, KERAS_FILES)
    return folder, run_backends(folder, presets, NUM_CLASSES, KERAS_FILES)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_logits(runs, backend, name):
    folder, errors = runs
    assert check(folder, errors, backend, name) < TOLERANCE
    # A negative control: another preset's logits are far from these (the comparison can fail).
    other = "rgb_r2plus1d_32f_34" if name != "rgb_r2plus1d_32f_34" else "rgb_I3D64f"
    assert relative_difference(np.load(os.path.join(folder, f"{other}.tensorflow.npy")),
                               np.load(os.path.join(folder, f"{name}.{backend}.npy"))) > 1e-2


@pytest.mark.parametrize("name", KERAS_FILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_file_round_trip(runs, backend, name):
    import keras

    folder, errors = runs
    assert check(folder, errors, backend, name, suffix=".keras") < TOLERANCE  # the TF-saved file, loaded there
    # ... and the file that backend saved, loaded back here on TensorFlow.
    model = keras.saving.load_model(os.path.join(folder, f"{name}.{backend}.keras"))
    x = np.load(os.path.join(folder, f"{name}.input.npy"))
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)),
                               np.load(os.path.join(folder, f"{name}.tensorflow.npy")), rtol=0, atol=1e-4)
    assert model.get_config() == build_model(name, NUM_CLASSES, **tiny_overrides(name)).get_config()
