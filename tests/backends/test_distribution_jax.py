"""keras.distribution.DataParallel over two CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2)
ends two fit steps with the weights of the one-device run on the same global batch."""
import os
import subprocess
import sys

import numpy as np
import pytest

from harness_backends import HERE, installed


def run(tmp_path, devices):
    out = str(tmp_path / f"weights_{devices}.npz")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0",
               PYTHONPATH=os.pathsep.join([os.path.join(os.path.dirname(HERE), "models"),
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, os.path.join(HERE, "distribution_worker.py"), out, str(devices)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(out) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed (pip install -e '.[jax]')")
def test_two_devices_equal_one(tmp_path):
    one, two = run(tmp_path, 1), run(tmp_path, 2)
    assert len(one) == len(two)
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    # The steps changed the weights (else equality would prove nothing).
    with np.load(tmp_path / "weights_1_init.npz") as f:
        init = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    moved = sum(not np.allclose(a, b, atol=1e-6) for a, b in zip(one, init))
    assert moved > len(one) // 2
