"""Every `bert3d` subcommand with its documented flags (the README's command lines and each `--help`), each in a
FRESH process started as the console script starts it: an import circle that a test process, with the whole API
already imported, hides (`bert3d to-tfrecord ... --preset NAME` once failed that way) fails here."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from keras_bert3d.cli import COMMANDS, command_parser

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# What the installed console script runs, with argv[0] as it sets it (the package root reads it at import).
CONSOLE = "import sys; sys.argv[0] = 'bert3d'; from keras_bert3d.cli import main; sys.exit(main())"
PARSE_ONLY = ("import sys; sys.argv[0] = 'bert3d'; from keras_bert3d.cli import parse; "
              "command, args = parse(sys.argv[1:]); print('PARSED', command, sorted(vars(args)))")
# `bert3d COMMAND --help` as the console script runs it, then which heavy modules it imported.
HELP = """
import sys
sys.argv[0] = "bert3d"
from keras_bert3d.cli import main
try:
    code = main()
except SystemExit as stop:
    code = stop.code
print("HEAVY", sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules))
sys.exit(code)
"""


def bert3d(args, cwd, code=CONSOLE, timeout=600):
    """``(return code, stdout + stderr)`` of ``bert3d ARGS`` in a new interpreter on this checkout's code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def readme_command_lines():
    """Each ``bert3d ...`` line of the README's bash blocks as argv (continuations joined, comments dropped)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["bert3d"]:
                lines.append(argv[1:])
    return lines


README_LINES = readme_command_lines()


def test_the_readme_documents_the_main_subcommands():
    documented = {argv[0] for argv in README_LINES}
    assert documented >= {"models", "convert", "synth", "index", "check-videos", "to-tfrecord", "train", "evaluate",
                          "tune", "export", "predict"}
    assert documented <= set(COMMANDS)


@pytest.mark.parametrize("argv", README_LINES, ids=[" ".join(a)[:60] for a in README_LINES])
def test_each_readme_command_line_parses(argv, tmp_path):
    code, out = bert3d(argv, tmp_path, PARSE_ONLY, timeout=120)
    assert code == 0 and f"PARSED {argv[0]} " in out, out[-2000:]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_help_lists_its_flags_without_tensorflow(name, tmp_path):
    rc, out = bert3d([name, "--help"], tmp_path, HELP)
    assert rc == 0 and f"usage: bert3d {name}" in out, out[-2000:]
    flags = [s for action in command_parser(name)._actions for s in action.option_strings if s.startswith("--")]
    assert flags and all(flag in out for flag in flags), [f for f in flags if f not in out]
    assert "HEAVY []" in out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The README's `bert3d synth DIR --demo --videos-per-class N`, with few videos."""
    folder = tmp_path_factory.mktemp("documented")
    code, out = bert3d(["synth", "data/synthetic", "--demo", "--videos-per-class", "3"], folder, timeout=300)
    assert code == 0 and (folder / "data" / "synthetic" / "classInd.txt").is_file(), out[-2000:]
    return folder


def test_data_commands_run_their_documented_lines(synthetic):
    code, out = bert3d(["index", "ucf101", "data/synthetic", "--split", "1", "--subset", "test"], synthetic)
    assert code == 0 and "data/synthetic/" in out, out[-2000:]
    code, out = bert3d(["check-videos", "data/synthetic"], synthetic)
    assert code == 0 and re.search(r"checked \d+ videos: 0 will not decode", out), out[-2000:]
    code, out = bert3d(["to-tfrecord", "ucf101", "data/synthetic", "data/synthetic_tfrecord", "--frame-size", "16x20",
                        "--subset", "train", "--no-progress"], synthetic)
    assert code == 0, out[-2000:]
    manifest = json.loads((synthetic / "data" / "synthetic_tfrecord" / "train-manifest.json").read_text())
    assert manifest["num_shards"] >= 1 and "size [16, 20]" in out


def test_to_tfrecord_takes_a_preset_frame_size(synthetic):
    """The issue's line: ``bert3d to-tfrecord folders ROOT OUT --preset rgb_r2plus1d_32f_34_bert10``."""
    code, out = bert3d(["to-tfrecord", "folders", "data/synthetic", "preset_out", "--preset",
                        "rgb_r2plus1d_32f_34_bert10", "--workers", "1", "--no-progress"], synthetic)
    assert code == 0, out[-2000:]
    assert "size [128, 170]" in out and (synthetic / "preset_out" / "train-manifest.json").is_file()


@pytest.mark.full
def test_models_lists_every_preset(tmp_path):
    code, out = bert3d(["models", "--json"], tmp_path)
    assert code == 0, out[-2000:]
    rows, _ = json.JSONDecoder().raw_decode(out[out.index("["):])  # stdout, then the stderr lines
    assert len(rows) == 27 and rows[0]["name"] == "rgb_r2plus1d_32f_34"


@pytest.mark.full
def test_convert_reads_a_reference_file(tmp_path):
    """`bert3d convert FILE --arch NAME --num-classes 51 -o OUT` on an .npz with one reference tensor."""
    import numpy as np

    name = "rgb_r2plus1d_32f_34_bert10"
    key, shape = (REPO / "tests" / "fixtures" / "keys" / f"{name}.txt").read_text().splitlines()[0].split(" ", 1)
    np.savez(tmp_path / "ref.npz", **{key: np.zeros([int(v) for v in shape.strip("()").split(",") if v.strip()],
                                                    np.float32)})
    code, out = bert3d(["convert", "ref.npz", "--arch", name, "--num-classes", "51", "-o", "out.weights.h5"], tmp_path)
    assert code == 0 and (tmp_path / "out.weights.h5").is_file(), out[-2000:]


@pytest.mark.full
def test_train_evaluate_tune_export_predict_run_their_documented_lines(synthetic):
    """Steps 3-8 of the README on the demo config, one epoch on the small synthetic set."""
    config = str(REPO / "training" / "configs" / "synthetic_bert.yaml")
    short = ["train.epochs=1"]
    code, out = bert3d(["train", config, *short], synthetic)
    assert code == 0 and (synthetic / "runs" / "synthetic_bert" / "best.keras").is_file(), out[-3000:]
    code, out = bert3d(["evaluate", "runs/synthetic_bert", "--clips", "cover", "--crops", "10", "--limit", "2"],
                       synthetic)
    assert code == 0 and (synthetic / "runs" / "synthetic_bert" / "eval_coverx10" / "metrics.json").is_file(), \
        out[-3000:]
    code, out = bert3d(["tune", config, *short, "--tuner", "random", "--max-trials", "2", "--epochs", "2"], synthetic)
    assert code == 0 and (synthetic / "runs" / "synthetic_bert" / "tune" / "best_config.yaml").is_file(), out[-3000:]
    code, out = bert3d(["export", "runs/synthetic_bert/best.keras", "--output", "saved_models/synthetic_bert",
                        "--models-config"], synthetic)
    assert code == 0 and (synthetic / "saved_models" / "models.config").is_file(), out[-3000:]
    video = next((synthetic / "data" / "synthetic").glob("*/*.mp4"))
    code, out = bert3d(["predict", video, "--model", "runs/synthetic_bert/best.keras", "--explain", "attention.png"],
                       synthetic)
    assert code == 0 and (synthetic / "attention.png").is_file(), out[-3000:]
    code, out = bert3d(["predict", video, "--model", "runs/synthetic_bert/best.keras", "--timeline", "timeline.png",
                        "--stride", "0.5s"], synthetic)
    assert code == 0 and (synthetic / "timeline.png").is_file(), out[-3000:]
