"""ClipAugmenter gives TensorFlow's output bit for bit on JAX (eager and jit) and PyTorch, in processes where
TensorFlow cannot be imported (tests/backends/clip_augmenter_worker.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness_backends import installed
from train_runs import REPO

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clip_augmenter_worker.py")
PREP = {"crop_size": 16, "scale": 1 / 255, "mean": [0.43216, 0.394666, 0.37645], "std": [0.22803, 0.22145, 0.216989]}


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_clip_augmenter_equals_tensorflow(tmp_path, backend):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    from keras_bert3d.models.clip_augmenter import ClipAugmenter

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (32, 2, 24, 30, 3), np.uint8)
    windows = []
    for k in range(len(frames)):  # down- and up-scaling windows, S x S ones, flips
        h, w = (16, 16) if k < 4 else (int(rng.integers(8, 25)), int(rng.integers(8, 31)))
        windows.append([int(rng.integers(0, 25 - h)), int(rng.integers(0, 31 - w)), h, w, k % 2])
    windows = np.asarray(windows, np.int32)
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "windows.npy", windows)
    (tmp_path / "prep.json").write_text(json.dumps(PREP))
    expected = np.asarray(ClipAugmenter.from_preprocessing(PREP)({"frames": frames, "windows": windows}))

    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, WORKER, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and f"ok {backend}" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in (f"out.{backend}.npy", f"out.{backend}.compiled.npy"):
        assert np.array_equal(np.load(tmp_path / name), expected), name
