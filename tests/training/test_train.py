"""training/train.py end to end on the synthetic dataset, through its command line (subprocesses)."""
import io
import json
import os
import shutil
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

from keras_bert3d.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
TINY = {"num_frames": 8, "image_size": 32, "stage_blocks": [1, 1, 1, 1], "stage_filters": [8, 8, 16, 16],
        "stem_filters": [6, 8]}
TIMEOUT = 600


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """2 classes x 6 videos: 8 train and 4 test videos (split 1)."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_classes=2, videos_per_class=6, num_frames=24, size=(48, 40))
    return root


def _config(tmp_path, root, preset="rgb_r2plus1d_32f_34_bert10", model=None, data=None, train=None):
    overrides = dict(TINY, **({"num_heads": 2} if preset.endswith("bert10") else {}))
    config = {"name": "run", "output_dir": str(tmp_path / "runs"),
              "model": {"preset": preset, "overrides": overrides, **(model or {})},
              "data": {"dataset": "ucf101", "root": str(root), "batch_size": 2, **(data or {})},
              "train": {"epochs": 3, "gradient_accumulation_steps": 2, "learning_rate": 1e-3, "backup_freq": 1,
                        "verbose": 2, **(train or {})}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _command(config, *overrides):
    return [sys.executable, "-m", "training.train", str(config), *overrides]


def _start(command, log):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _run(command, log_path):
    with open(log_path, "w") as log:
        code = _start(command, log).wait(timeout=TIMEOUT)
    output = Path(log_path).read_text()
    assert code == 0, output[-3000:]
    return output


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _keras_weights(path):
    """Every weight array of a .keras file (read from its HDF5 member, no TensorFlow needed)."""
    with zipfile.ZipFile(path) as archive:
        data = io.BytesIO(archive.read("model.weights.h5"))
    arrays = {}
    with h5py.File(data, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _history(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


def test_sigkill_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, dataset):
    config, runs = _config(tmp_path, dataset), tmp_path / "runs"
    state_path = runs / "killed" / "backup" / "state.json"
    with open(tmp_path / "reference.log", "w") as reference_log, open(tmp_path / "killed.log", "w") as killed_log:
        reference = _start(_command(config, "name=reference"), reference_log)  # both run at once (2 cores)
        killed = _start(_command(config, "name=killed"), killed_log)
        deadline, kill_point = time.time() + TIMEOUT, None
        while killed.poll() is None and time.time() < deadline:
            state = _read_json(state_path)
            if state and state["epoch"] >= 1 and state["step"] > 0:  # a backup inside the 2nd (or 3rd) epoch
                killed.send_signal(signal.SIGKILL)
                kill_point = (state["epoch"], state["step"])
                break
            time.sleep(0.002)
        killed.wait(timeout=60)
        assert killed.returncode == -signal.SIGKILL, (kill_point, (tmp_path / "killed.log").read_text()[-3000:])
        assert not (runs / "killed" / "summary.json").exists() and not (runs / "killed" / "last.keras").exists()
        assert reference.wait(timeout=TIMEOUT) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    output = _run(_command(config, "name=killed"), tmp_path / "resumed.log")  # the same command again

    resumed = _read_json(runs / "killed" / "summary.json")
    uninterrupted = _read_json(runs / "reference" / "summary.json")
    assert uninterrupted["resumed_from"] is None
    start = resumed["resumed_from"]
    assert start["epoch"] >= 1 and start["step"] > 0, start  # mid-epoch, not from epoch 0
    assert (start["epoch"], start["step"]) >= kill_point
    assert f"Resuming {runs / 'killed'} at epoch {start['epoch'] + 1}, step {start['step']}" in output
    assert "Epoch 1/3" not in output  # epoch 1 was not trained again
    rows_a, rows_b = _history(runs / "reference"), _history(runs / "killed")
    assert [r["epoch"] for r in rows_b] == [0, 1, 2]
    for a, b in zip(rows_a, rows_b):  # every epoch, including the interrupted one's train metrics
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["epoch"], key)
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]
    assert resumed["best_val_top1"] == pytest.approx(uninterrupted["best_val_top1"])
    for name in ("last.keras", "best.keras"):
        weights_a, weights_b = _keras_weights(runs / "reference" / name), _keras_weights(runs / "killed" / name)
        assert weights_a.keys() == weights_b.keys() and len(weights_a) > 50
        for key in weights_a:
            np.testing.assert_allclose(weights_b[key], weights_a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert rows_a[0]["loss"] != rows_a[2]["loss"]  # it trained: the equality is not that of untouched models


def test_tgap_sgd_frozen_backbone_mixup_reference_weights_and_bad_video(tmp_path, dataset):
    """The baseline recipe (SGD), starting from a reference-named .npz, frozen backbone, mixup labels, and a
    broken training video that is skipped and counted while every epoch keeps its number of steps."""
    import keras

    from keras_bert3d.convert.checkpoint import model_weight_map
    from keras_bert3d.models.builder import build_model

    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    broken = next(line.split()[0] for line in (root / "trainlist01.txt").read_text().splitlines())
    (root / broken).write_bytes(b"not a video at all")
    source = build_model("rgb_r2plus1d_32f_34", 2, **TINY)
    np.savez(tmp_path / "reference.npz", **model_weight_map(source).export())
    config = _config(tmp_path, root, preset="rgb_r2plus1d_32f_34",
                     model={"weights": str(tmp_path / "reference.npz"), "freeze_backbone": True},
                     data={"mixup": 0.4}, train={"epochs": 2, "gradient_accumulation_steps": 1,
                                                 "optimizer": "auto", "learning_rate": None})
    output = _run(_command(config), tmp_path / "run.log")
    run_dir = tmp_path / "runs" / "run"

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["optimizer"] == "sgd" and resolved["train"]["learning_rate"] == pytest.approx(1e-2)
    assert resolved["model"]["num_classes"] == 2
    assert json.loads((run_dir / "class_names.json").read_text()) == ["RedGreen", "GreenRed"]
    summary = _read_json(run_dir / "summary.json")
    assert summary["skipped_videos"] >= 1 and summary["optimizer"] == "sgd" and summary["steps_per_epoch"] == 4
    assert "bad video" in output and "loaded" in output and "reference tensors" in output
    assert [r["epoch"] for r in _history(run_dir)] == [0, 1]
    assert {"loss", "top1", "top5", "val_loss", "val_top1", "learning_rate"} <= set(_history(run_dir)[0])
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(run_dir / "logs") for name in files)
    assert (run_dir / "best.keras").exists() and not list(run_dir.glob(".*tmp*"))

    trained = keras.saving.load_model(run_dir / "last.keras", compile=False)
    for a, b in zip(source.backbone.weights, trained.backbone.weights):  # frozen: BN statistics included
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert not np.allclose(np.asarray(source.get_layer("classifier").kernel),
                           np.asarray(trained.get_layer("classifier").kernel))
