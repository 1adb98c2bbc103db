"""data.augment: auto picks host on a CPU and device where the backend sees an accelerator; the errors name
the key; a `model.fit` run with data.augment=device trains through the ClipAugmenter and keeps (saves,
backs up, resumes) the plain classifier."""
import shutil

import keras
import numpy as np
import pytest
import yaml

from train_runs import TINY, write_dataset
from keras_bert3d import backend
from keras_bert3d.models.video_classifier import VideoClassifier
from keras_bert3d.training import model_setup
from keras_bert3d.training.config import validate_config
from keras_bert3d.training.train import train

MINIMAL = {"model": {"preset": "rgb_r2plus1d_32f_34"}, "data": {"dataset": "ucf101", "root": "/d"}}


def _config(**data):
    return validate_config(dict(MINIMAL, data=dict(MINIMAL["data"], **data)))


def test_auto_follows_the_accelerator(monkeypatch):
    assert not backend.accelerator_visible()  # this CPU machine
    assert model_setup.resolve_augment(_config()) == "host"
    monkeypatch.setattr(backend, "accelerator_visible", lambda: True)
    assert model_setup.resolve_augment(_config()) == "device"
    assert model_setup.resolve_augment(_config(mixup=0.2)) == "host"  # mixup mixes normalised clips on the host
    assert model_setup.resolve_augment(_config(augment="host")) == "host"
    with pytest.raises(ValueError, match=r"data\.augment.*mixup"):
        model_setup.resolve_augment(_config(augment="device", cutmix=1.0))
    with pytest.raises(ValueError, match=r"data\.augment"):
        _config(augment="gpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


def _run_config(tmp_path, root):
    return {"name": "device", "output_dir": str(tmp_path / "runs"),
              "model": {"preset": "rgb_r2plus1d_32f_34", "overrides": TINY},
              "data": {"dataset": "ucf101", "root": str(root), "batch_size": 2, "augment": "device"},
              "train": {"epochs": 1, "steps_per_epoch": 2, "validation_steps": 1, "gradient_accumulation_steps": 1,
                        "learning_rate": 1e-3, "backup_freq": "epoch", "verbose": 0}}


@pytest.mark.parametrize("strategy", ["default", pytest.param("mirrored", marks=pytest.mark.full)])
def test_fit_with_device_augmentation_keeps_the_classifier(tmp_path, dataset, strategy):
    """model.fit (default strategy), and the custom loop (mirrored with gradient accumulation)."""
    config = _run_config(tmp_path, dataset)
    if strategy == "mirrored":
        config["train"].update(strategy="mirrored", gradient_accumulation_steps=2)
    summary = train(config)
    run_dir = tmp_path / "runs" / "device"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["augment"] == "device"
    assert summary["final"]["loss"] > 0 and summary["best_epoch"] == 0
    assert ("global_step" in summary) == (strategy == "mirrored")  # the custom loop's summary
    for name in ("best.keras", "last.keras"):
        model = keras.saving.load_model(run_dir / name, compile=False)
        assert isinstance(model, VideoClassifier), name  # the plain classifier, not the training wrapper


@pytest.mark.full
def test_a_device_run_resumes_mid_epoch_exactly(tmp_path, dataset):
    """Back to the mid-epoch backup (its state.previous.json): the resumed run ends with the same weights."""
    config = _run_config(tmp_path, dataset)
    config["train"]["backup_freq"] = 1
    train(config)
    run_dir = tmp_path / "runs" / "device"
    first = keras.saving.load_model(run_dir / "last.keras", compile=False).get_weights()
    shutil.copy(run_dir / "backup" / "state.previous.json", run_dir / "backup" / "state.json")
    assert train(config)["resumed_from"] == {"epoch": 0, "step": 1}
    again = keras.saving.load_model(run_dir / "last.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match=r"data\.augment"):  # the backup belongs to a device run
        train(dict(config, data=dict(config["data"], augment="host")))
