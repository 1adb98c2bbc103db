"""The named full-size presets give TensorFlow's logits on JAX and PyTorch (marker backends_full)."""
import pytest

from harness_backends import BACKENDS, TOLERANCE, check, run_backends, write_reference

NUM_CLASSES = 101
FULL = ("rgb_r2plus1d_32f_34_bert10", "rgb_slowfast64f_50_bert10_FRAB_late")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full_backends")
    presets = {name: {} for name in FULL}
    write_reference(folder, presets, NUM_CLASSES, batch=1)
    return folder, run_backends(folder, presets, NUM_CLASSES, timeout=1800)


@pytest.mark.backends_full
@pytest.mark.parametrize("name", FULL)
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_logits_full_size(runs, backend, name):
    folder, errors = runs
    assert check(folder, errors, backend, name) < TOLERANCE
