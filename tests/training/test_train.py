"""training/train.py end to end on the synthetic dataset, through its command line (subprocesses)."""
import json
import os
import shutil

import numpy as np
import pytest
import yaml

from train_runs import TINY, check_kill_and_resume, write_dataset
from train_runs import command as _command, config as _config, history as _history, read_json as _read_json, run as _run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """2 classes x 6 videos: 8 train and 4 test videos (split 1)."""
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.full
def test_sigkill_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, dataset):
    check_kill_and_resume(tmp_path, dataset)


@pytest.mark.full
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
