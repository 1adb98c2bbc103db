"""keras_bert3d.training.tune and hypermodel: the search space, the best trial as a training
config, the strategies, and a tiny Hyperband search (2 trials, a tiny model, one step per epoch) on the
synthetic videos."""
import csv
import os

import keras
import keras_tuner
import pytest
import yaml

import keras_bert3d
from keras_bert3d.data.synthetic import write_synthetic_dataset
from keras_bert3d.cli import main as cli_main
from keras_bert3d.training import search_space, tune
from keras_bert3d.training.hypermodel import make_tuner
from keras_bert3d.training.config_files import load_config, save_config
from keras_bert3d.training.model_setup import build_classifier
from models.tiny_presets import TINY_R2PLUS1D_BERT

PRESET = "rgb_r2plus1d_32f_34_bert10"
TINY = TINY_R2PLUS1D_BERT
TOKEN_WIDTH = TINY["stage_filters"][-1]  # the tokens are the last stage's channels


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    write_synthetic_dataset(folder / "videos", num_classes=3, videos_per_class=4, num_frames=24, size=(64, 48),
                            seed=2)
    config = {"name": "tiny", "output_dir": str(folder / "runs"),
              "model": {"preset": PRESET, "overrides": TINY},
              "data": {"dataset": "ucf101", "root": str(folder / "videos"), "batch_size": 4},
              "train": {"epochs": 1, "gradient_accumulation_steps": 1, "verbose": 0, "steps_per_epoch": 1,
                        "validation_steps": 1}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_resolve_space(tmp_path):
    assert search_space.resolve_space() == search_space.SEARCH_SPACE
    (tmp_path / "space.yaml").write_text("num_layers: 1\nfreeze_backbone: null\n"
                                         "learning_rate: {min: 1.0e-5, max: 1.0e-3, sampling: log}\n")
    space = search_space.resolve_space(str(tmp_path / "space.yaml"))
    assert space["num_layers"] == 1 and "freeze_backbone" not in space
    assert space["learning_rate"]["max"] == 1e-3 and space["num_heads"] == search_space.SEARCH_SPACE["num_heads"]
    assert set(search_space.resolve_space(only=["num_heads", "learning_rate"])) == {"num_heads", "learning_rate"}
    with pytest.raises(ValueError, match="'hidden_dim'"):
        search_space.resolve_space({"hidden_dim": {"values": [1]}})
    with pytest.raises(ValueError, match="nmu_heads"):
        search_space.resolve_space(only=["nmu_heads"])
    with pytest.raises(ValueError, match="min must be <= max"):
        search_space.resolve_space({"bert_dropout": {"min": 0.5, "max": 0.1}})
    with pytest.raises(ValueError, match="values"):
        search_space.resolve_space({"num_heads": [2, 4]})


def test_define_declares_keras_tuner_hyperparameters():
    hp = keras_tuner.HyperParameters()
    assert search_space.define(hp, "num_heads", {"values": [4, 2]}) == 4  # a choice's default is its first value
    assert search_space.define(hp, "freeze_backbone", {"values": [False, True]}) is False
    assert search_space.define(hp, "num_layers", {"min": 1, "max": 3}) == 1
    assert search_space.define(hp, "mask_keep_prob", {"min": 0.6, "max": 1.0, "step": 0.1}) == 0.6
    assert search_space.define(hp, "weight_decay", 1e-3) == 1e-3
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"num_heads": "Choice", "freeze_backbone": "Boolean", "num_layers": "Int",
                     "mask_keep_prob": "Float", "weight_decay": "Fixed"}
    keep = next(p for p in hp.space if p.name == "mask_keep_prob")
    samples = {round(keep.random_sample(seed), 10) for seed in range(40)}
    assert samples <= {0.6, 0.7, 0.8, 0.9, 1.0} and len(samples) > 1


def test_space_fitted_to_model():
    model = keras_bert3d.build_model(PRESET, 3, **TINY)
    space = search_space.fit_space_to_model({"num_heads": {"values": [3, 4, 8, 32]}}, model)
    assert space["num_heads"]["values"] == [h for h in (3, 4, 8, 32) if TOKEN_WIDTH % h == 0] == [4, 8]
    with pytest.raises(ValueError, match="divides"):
        search_space.fit_space_to_model({"num_heads": {"values": [3, 5]}}, model)
    tgap = keras_bert3d.build_model("rgb_r2plus1d_32f_34", 3, **{k: v for k, v in TINY.items() if k != "num_heads"})
    with pytest.raises(ValueError, match="no BERT"):
        search_space.fit_space_to_model(search_space.SEARCH_SPACE, tgap)
    assert search_space.fit_space_to_model({"learning_rate": 1e-4}, tgap) == {"learning_rate": 1e-4}


def test_best_config_is_a_training_config(config_file, tmp_path):
    config = load_config(config_file)
    values = {"num_heads": 4, "num_layers": 2, "bert_dropout": 0.2, "mask_keep_prob": 0.9, "learning_rate": 3e-4,
              "weight_decay": 1e-4, "freeze_backbone": True, "tuner/epochs": 2, "tuner/trial_id": "0001"}
    best = tune.best_config(config, values)
    path = save_config(best, tmp_path / "best.yaml")
    assert load_config(path) == best
    assert best["name"] == "tiny_tuned" and best["model"]["freeze_backbone"] is True
    assert best["model"]["overrides"] == {**TINY, "num_heads": 4, "num_layers": 2, "bert_dropout": 0.2,
                                          "mask_keep_prob": 0.9}
    assert best["train"]["learning_rate"] == 3e-4 and best["train"]["weight_decay"] == 1e-4
    assert config["model"]["overrides"] == TINY  # the input config is left alone
    # a VideoClassifier config instead of a preset: the values go into it
    classifier = keras_bert3d.build_model(PRESET, 3, **TINY)
    config_form = load_config(None, {"data.dataset": "ucf101", "data.root": "x", "model.config":
                                     keras.saving.serialize_keras_object(classifier)})
    best = tune.best_config(config_form, values)
    model = build_classifier(best["model"], 3)
    bert = model.bert_layers()["bert"]
    assert (bert.num_heads, bert.num_layers) == (4, 2)


def test_tuner_choice(tmp_path):
    def hypermodel(hp):
        return None

    common = dict(objective="val_top1", directory=str(tmp_path), epochs=3, max_trials=4)
    hyperband = make_tuner("hyperband", hypermodel, project_name="h", **common)
    assert isinstance(hyperband, keras_tuner.Hyperband) and hyperband.oracle.max_epochs == 3
    random = make_tuner("random", hypermodel, project_name="r", **common)
    assert isinstance(random, keras_tuner.RandomSearch) and random.oracle.max_trials == 4
    assert random.oracle.objective.direction == "max"
    try:
        import scipy  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="scikit-learn"):
            make_tuner("bayesian", hypermodel, project_name="b", **common)
    else:
        bayesian = make_tuner("bayesian", hypermodel, project_name="b", **common)
        assert isinstance(bayesian, keras_tuner.BayesianOptimization)
    with pytest.raises(ValueError, match="objective"):
        make_tuner("random", hypermodel, project_name="x", **dict(common, objective="top1"))


def test_multi_worker_is_refused(config_file, capsys):
    assert cli_main(["tune", config_file, "--strategy", "multi_worker"]) == 2
    err = capsys.readouterr().err
    assert "keras-team/keras#20585" in err and "KERASTUNER_ORACLE_IP" in err and "--strategy mirrored" in err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["tune", config_file, "--factor", "1"])
    assert exit_info.value.code == 2 and "--factor: must be >= 2" in capsys.readouterr().err


@pytest.mark.full
def test_tiny_hyperband_search(config_file, tmp_path, capsys):
    """The default tuner under MirroredStrategy (one CPU replica): Hyperband with max_epochs 2, factor 3
    runs 2 trials of 2 epochs; the leaderboard is printed and the best trial becomes a training config."""
    directory = tmp_path / "search"
    assert cli_main(["tune", config_file, "--epochs", "2", "--strategy", "mirrored", "--directory", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "rank  trial  val_top1  epochs  num_heads" in out and "best_config.yaml" in out
    with open(directory / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [r["rank"] for r in rows] == ["1", "2"]
    assert float(rows[0]["score"]) >= float(rows[1]["score"])
    best = load_config(directory / "best_config.yaml")
    overrides = best["model"]["overrides"]
    assert overrides["num_heads"] == int(rows[0]["num_heads"]) and TOKEN_WIDTH % overrides["num_heads"] == 0
    assert overrides["num_layers"] == int(rows[0]["num_layers"])
    assert best["train"]["learning_rate"] == pytest.approx(float(rows[0]["learning_rate"]))
    assert best["model"]["freeze_backbone"] == (rows[0]["freeze_backbone"] == "True")
    assert best["train"]["strategy"] == "mirrored" and best["name"] == "tiny_tuned"
    assert os.path.isdir(directory / "hyperband")
