"""Saved tiny models written by an earlier version still load and give the same outputs."""
import pathlib

import keras
import numpy as np
import pytest

GOLDEN = pathlib.Path(__file__).parent.parent / "fixtures" / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.keras"))


def test_golden_files_present():
    assert len(NAMES) == 4


@pytest.mark.parametrize("name", NAMES)
def test_golden_model_loads_with_same_outputs(name):
    import keras_bert3d  # noqa: F401 - registers the classes

    data = np.load(GOLDEN / f"{name}.npz")
    model = keras.saving.load_model(GOLDEN / f"{name}.keras")
    np.testing.assert_allclose(np.asarray(model(data["input"])), data["output"], atol=1e-5)
