"""ReferenceAdamW and ReferenceSGD on every installed Keras backend: `optimizer.apply` and `model.fit`, with and
without gradient accumulation, against torch's update formulas (tests/backends/optimizer_worker.py)."""
import os
import subprocess
import sys

import pytest

from harness_backends import installed
from train_runs import REPO

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizer_worker.py")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_reference_optimizers_on_backend(backend):
    if backend != "tensorflow" and not installed(backend):
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                                  os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, WORKER], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"ok {backend}" in proc.stdout
