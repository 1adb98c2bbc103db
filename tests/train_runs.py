"""Training runs through the command line (subprocesses), shared by tests/training and tests/backends:
a tiny config, the run folder's files, and the kill-and-resume scenario on any Keras backend."""
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from models.tiny_presets import TINY_R2PLUS1D

REPO = Path(__file__).resolve().parents[1]
TINY = TINY_R2PLUS1D
TIMEOUT = 600


def write_dataset(root):
    """2 classes x 6 videos: 8 train and 4 test videos (split 1)."""
    from keras_bert3d.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(root, num_classes=2, videos_per_class=6, num_frames=24, size=(48, 40))
    return root


def config(tmp_path, root, preset="rgb_r2plus1d_32f_34_bert10", model=None, data=None, train=None):
    overrides = dict(TINY, **({"num_heads": 2} if preset.endswith("bert10") else {}))
    values = {"name": "run", "output_dir": str(tmp_path / "runs"),
              "model": {"preset": preset, "overrides": overrides, **(model or {})},
              "data": {"dataset": "ucf101", "root": str(root), "batch_size": 2, **(data or {})},
              "train": {"epochs": 3, "gradient_accumulation_steps": 2, "learning_rate": 1e-3, "backup_freq": 1,
                        "verbose": 2, **(train or {})}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def command(config_path, *overrides):
    return [sys.executable, "-m", "training.train", str(config_path), *overrides]


def start(argv, log, backend="tensorflow"):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               KERAS_BACKEND=backend)
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def run(argv, log_path, backend="tensorflow"):
    with open(log_path, "w") as log:
        code = start(argv, log, backend).wait(timeout=TIMEOUT)
    output = Path(log_path).read_text()
    assert code == 0, output[-3000:]
    return output


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def keras_weights(path):
    """Every weight array of a .keras file (read from its HDF5 member, no TensorFlow needed), or of a
    .weights.h5 file, by HDF5 path (both name a weight the same way)."""
    if str(path).endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            path = io.BytesIO(archive.read("model.weights.h5"))
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def history(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


def check_kill_and_resume(tmp_path, dataset, backend="tensorflow", **train):
    """Two runs of one tiny config at once; one is SIGKILLed after a backup inside its second epoch and
    started again with the same command: it resumes mid-epoch and ends with the uninterrupted run's history,
    best epoch and weights. Returns the resumed run's summary."""
    config_path, runs = config(tmp_path, dataset, train=train or None), tmp_path / "runs"
    state_path = runs / "killed" / "backup" / "state.json"
    with open(tmp_path / "reference.log", "w") as reference_log, open(tmp_path / "killed.log", "w") as killed_log:
        reference = start(command(config_path, "name=reference"), reference_log, backend)  # both run at once (2 cores)
        killed = start(command(config_path, "name=killed"), killed_log, backend)
        deadline, kill_point = time.time() + TIMEOUT, None
        while killed.poll() is None and time.time() < deadline:
            state = read_json(state_path)
            if state and state["epoch"] >= 1 and state["step"] > 0:  # a backup inside the 2nd (or 3rd) epoch
                killed.send_signal(signal.SIGKILL)
                kill_point = (state["epoch"], state["step"])
                break
            time.sleep(0.002)
        killed.wait(timeout=60)
        assert killed.returncode == -signal.SIGKILL, (kill_point, (tmp_path / "killed.log").read_text()[-3000:])
        assert not (runs / "killed" / "summary.json").exists() and not (runs / "killed" / "last.keras").exists()
        assert reference.wait(timeout=TIMEOUT) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    output = run(command(config_path, "name=killed"), tmp_path / "resumed.log", backend)  # the same command again

    resumed = read_json(runs / "killed" / "summary.json")
    uninterrupted = read_json(runs / "reference" / "summary.json")
    assert uninterrupted["resumed_from"] is None
    at = resumed["resumed_from"]
    assert at["epoch"] >= 1 and at["step"] > 0, at  # mid-epoch, not from epoch 0
    assert (at["epoch"], at["step"]) >= kill_point
    assert f"Resuming {runs / 'killed'} at epoch {at['epoch'] + 1}, step {at['step']}" in output
    assert "Epoch 1/3" not in output  # epoch 1 was not trained again
    rows_a, rows_b = history(runs / "reference"), history(runs / "killed")
    assert [r["epoch"] for r in rows_b] == [0, 1, 2]
    for a, b in zip(rows_a, rows_b):  # every epoch, including the interrupted one's train metrics
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["epoch"], key)
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]
    assert resumed["best_val_top1"] == pytest.approx(uninterrupted["best_val_top1"])
    for name in ("last.keras", "best.keras"):
        weights_a, weights_b = keras_weights(runs / "reference" / name), keras_weights(runs / "killed" / name)
        assert weights_a.keys() == weights_b.keys() and len(weights_a) > 50
        for key in weights_a:
            np.testing.assert_allclose(weights_b[key], weights_a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert rows_a[0]["loss"] != rows_a[2]["loss"]  # it trained: the equality is not that of untouched models
    return resumed
