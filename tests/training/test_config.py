"""training/config.py: YAML/JSON configs, dotted overrides, validation naming the key, and the shipped configs."""
import glob
import json
import os

import pytest
import yaml

from keras_bert3d.training import config as cfg
from keras_bert3d.training import config_files
from keras_bert3d.cli import main as cli_main

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "training", "configs", "*.yaml")))
MINIMAL = {"model": {"preset": "rgb_r2plus1d_32f_34_bert10"}, "data": {"dataset": "hmdb51", "root": "/data/hmdb51"}}


def _write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def test_defaults_are_the_reference_recipe(tmp_path):
    config = config_files.load_config(_write(tmp_path, MINIMAL))
    train = config["train"]
    assert (train["optimizer"], train["learning_rate"], train["weight_decay"]) == ("auto", None, 1e-3)
    assert (train["gradient_accumulation_steps"], config["data"]["batch_size"]) == (16, 8)
    assert (train["plateau_patience"], train["plateau_factor"], train["epochs"]) == (5, 0.1, 200)
    assert (train["momentum"], train["dampening"], train["decay_norms_and_biases"]) == (0.9, 0.9, True)
    assert train["mixed_precision"] is None and train["jit_compile"] == "auto" and train["strategy"] == "default"
    assert set(cfg.DESCRIPTIONS) == set(cfg._flat(cfg.DEFAULTS))  # every key is documented in --help


def test_overrides_are_parsed_as_yaml(tmp_path):
    config = config_files.load_config(_write(tmp_path, MINIMAL), [
        "train.learning_rate=1e-4", "train.epochs=3", "model.overrides.stage_blocks=[1, 1, 1, 1]",
        "model.weights=null", "train.jit_compile=true", "name=my-run.2", "train.backup_freq=epoch"])
    assert config["train"]["learning_rate"] == pytest.approx(1e-4) and isinstance(config["train"]["learning_rate"],
                                                                                   float)
    assert config["train"]["epochs"] == 3 and config["train"]["jit_compile"] is True
    assert config["model"]["overrides"] == {"stage_blocks": [1, 1, 1, 1]}
    assert config["name"] == "my-run.2" and config["model"]["weights"] is None
    assert config["train"]["backup_freq"] == "epoch"


def test_yaml_reads_exponent_floats_and_json_works(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("model: {preset: x}\ndata: {dataset: ucf101, root: /d}\ntrain: {learning_rate: 1e-5}\n")
    assert config_files.load_config(path)["train"]["learning_rate"] == pytest.approx(1e-5)
    config = config_files.load_config(_write(tmp_path, dict(MINIMAL, train={"epochs": 7}), "c.json"))
    assert config["train"]["epochs"] == 7


@pytest.mark.parametrize("override, key", [
    ("train.foo=1", "train.foo"), ("bogus=1", "bogus"), ("data.batchsize=2", "data.batchsize"),
    ("train.epochs=ten", "train.epochs"), ("data.batch_size=0", "data.batch_size"),
    ("train.mixed_precision=fp16", "train.mixed_precision"), ("train.strategy=tpu", "train.strategy"),
    ("train.optimizer=adam", "train.optimizer"), ("train.jit_compile=1", "train.jit_compile"),
    ("train.plateau_factor=2", "train.plateau_factor"), ("train.backup_freq=0", "train.backup_freq"),
    ("data.dataset=imagenet", "data.dataset"), ("model.overrides=3", "model.overrides"),
    ("data.augment=gpu", "data.augment"),
])
def test_bad_values_name_the_key(tmp_path, override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config_files.load_config(_write(tmp_path, MINIMAL), [override])


def test_required_and_exclusive_keys(tmp_path):
    with pytest.raises(ValueError, match=r"data\.root"):
        config_files.load_config(_write(tmp_path, {"model": {"preset": "x"}, "data": {"dataset": "ucf101"}}))
    with pytest.raises(ValueError, match="exactly one of `model.preset` and `model.config`"):
        config_files.load_config(_write(tmp_path, MINIMAL), ["model.config={pooling: bert}"])
    with pytest.raises(ValueError, match="exactly one"):
        config_files.load_config(_write(tmp_path, MINIMAL), ["model.preset=null"])
    with pytest.raises(ValueError, match="key=value"):
        config_files.load_config(_write(tmp_path, MINIMAL), ["train.epochs"])
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        config_files.load_config(tmp_path / "nowhere.yaml")


def test_save_load_round_trip(tmp_path):
    config = config_files.load_config(_write(tmp_path, MINIMAL), ["train.learning_rate=3e-5", "model.overrides.num_heads=4"])
    for name in ("out.yaml", "out.json"):
        config_files.save_config(config, tmp_path / name)
        assert config_files.load_config(tmp_path / name) == config
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_shipped_configs_load_and_name_real_presets(path):
    from keras_bert3d.models.builder import list_models, resolve_preset

    config = config_files.load_config(path)
    assert config["model"]["preset"] in list_models()
    resolve_preset(config["model"]["preset"], **config["model"]["overrides"])  # overrides are valid arguments
    assert config["name"] and config["data"]["dataset"] in cfg.DATASETS


def test_paper_configs_cover_the_issue_settings():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"hmdb51_r2plus1d_32f_bert.yaml", "hmdb51_r2plus1d_32f_tgap.yaml", "ucf101_r2plus1d_64f_bert.yaml",
            "hmdb51_i3d_bert_frab.yaml", "hmdb51_resnext_bert_frmb.yaml", "hmdb51_slowfast_frab_late.yaml",
            "synthetic_bert.yaml", "synthetic_tgap.yaml"} <= names


def test_cli_print_config_and_errors(tmp_path, capsys):
    path = _write(tmp_path, MINIMAL)
    assert cli_main(["train", str(path), "train.epochs=5", "--strategy", "mirrored", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 5 and printed["train"]["strategy"] == "mirrored"
    assert cli_main(["train", str(path), "train.nope=1"]) == 2
    assert "train.nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    assert "train.gradient_accumulation_steps" in capsys.readouterr().out
