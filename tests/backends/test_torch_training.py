"""On PyTorch: a Keras fit step and a plain torch training loop over a VideoClassifier."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness_backends import HERE, installed


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed (pip install -e '.[torch]')")
def test_fit_and_plain_torch_loop(tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([os.path.join(os.path.dirname(HERE), "models"),
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, os.path.join(HERE, "torch_worker.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert all(np.isfinite(result["fit_loss"]))
    assert result["parameters"] == result["trainable"]  # torch sees exactly Keras' trainable weights
    losses = result["loop_losses"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
