"""The installed `bert3d` command: train, resume, evaluate and tune from a folder outside the clone, with no
PYTHONPATH; `--help` and argument errors without TensorFlow; old run folders keep loading."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from keras_bert3d.data.synthetic import write_synthetic_dataset
from models.tiny_presets import TINY_R2PLUS1D_BERT

BIN = Path(sys.executable).parent
TIMEOUT = 600


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_XDIST_WORKER")}
    return dict(env, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _bert3d(args, cwd):
    command = [str(BIN / "bert3d"), *args]
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """An empty folder outside the clone with a tiny dataset and config."""
    if shutil.which("bert3d", path=str(BIN)) is None:
        pytest.skip("the bert3d console script is not installed in this environment")
    folder = tmp_path_factory.mktemp("elsewhere")
    write_synthetic_dataset(folder / "videos", num_classes=2, videos_per_class=4, num_frames=16, size=(40, 32))
    config = {"name": "tiny", "output_dir": "runs",
              "model": {"preset": "rgb_r2plus1d_32f_34_bert10", "overrides": TINY_R2PLUS1D_BERT},
              "data": {"dataset": "ucf101", "root": "videos", "batch_size": 2},
              "train": {"epochs": 1, "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "verbose": 2}}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.mark.full
def test_train_resume_evaluate_tune_from_another_folder(elsewhere):
    code, out = _bert3d(["train", "tiny.yaml"], elsewhere)
    assert code == 0, out[-3000:]
    run = elsewhere / "runs" / "tiny"
    assert {"config.yaml", "class_names.json", "best.keras", "last.keras", "history.csv", "summary.json",
            "logs", "backup"} <= set(os.listdir(run))
    assert len((run / "history.csv").read_text().strip().splitlines()) == 2  # header + 1 epoch

    # The same command with one more epoch resumes from the backup instead of starting over.
    code, out = _bert3d(["train", "tiny.yaml", "train.epochs=2"], elsewhere)
    assert code == 0, out[-3000:]
    assert "Resuming" in out and "at epoch 2" in out
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == {"epoch": 1, "step": 0}
    assert [row.split(",")[0] for row in (run / "history.csv").read_text().strip().splitlines()[1:]] == ["0", "1"]

    code, out = _bert3d(["evaluate", "runs/tiny", "--clips", "center", "--crops", "1", "--quiet"], elsewhere)
    assert code == 0, out[-3000:]
    metrics = json.loads((run / "eval_centerx1" / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["videos"] > 0

    code, out = _bert3d(["tune", "tiny.yaml", "--tuner", "random", "--max-trials", "1", "--epochs", "1",
                         "--only", "learning_rate"], elsewhere)
    assert code == 0, out[-3000:]
    assert (run / "tune" / "best_config.yaml").is_file()


@pytest.mark.full
def test_a_bad_config_is_a_clear_error(elsewhere):
    code, out = _bert3d(["train", "missing.yaml"], elsewhere)
    assert code == 2 and "bert3d train: error: config file not found: missing.yaml" in out


HELP_WITHOUT_TF = """
import sys
sys.argv = ["bert3d"]                     # as the console script starts
from keras_bert3d.cli import main
for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"], ["tune", "--help"], ["nope"],
             ["tune", "x.yaml", "--factor", "1"], ["predict", "--help"], ["export", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
print("HEAVY", heavy)
import keras_bert3d                       # the public names still resolve, on first use
print("LAZY", keras_bert3d.VideoClassifier.__name__, keras_bert3d.predict_timeline.__name__)
"""


def test_help_and_argument_errors_import_no_tensorflow():
    done = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TF], env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "LAZY VideoClassifier predict_timeline" in done.stdout, done.stderr[-2000:]
    assert "usage: bert3d" in done.stdout and "invalid choice: 'nope'" in done.stderr
    assert "--factor: must be >= 2" in done.stderr


def test_run_folders_of_the_old_package_name_keep_loading(tmp_path):
    """Files written when the recipe was `training.recipe` name its classes `keras_bert3d_training>...`."""
    import keras
    import numpy as np

    from keras_bert3d.models import recipe

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=recipe.ReferenceSGD(0.1), loss=recipe.make_loss(), metrics=recipe.make_metrics(3))
    model.fit(np.ones((2, 4), np.float32), np.array([0, 1]), verbose=0)
    path = tmp_path / "new.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                assert b"keras_bert3d>ReferenceSGD" in data
                data = data.replace(b"keras_bert3d>", b"keras_bert3d_training>")
            dst.writestr(item, data)
    loaded = keras.saving.load_model(old)
    assert isinstance(loaded.optimizer, recipe.ReferenceSGD)
    np.testing.assert_array_equal(loaded.predict(np.ones((1, 4)), verbose=0), model.predict(np.ones((1, 4)), verbose=0))
