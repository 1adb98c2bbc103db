"""training/evaluate.py end to end: a tiny saved model on the synthetic videos, a run directory, and
two-stream fusion of an RGB and a flow model on reference-style frame folders."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

import keras_bert3d
from keras_bert3d.data.indexes import build_index
from keras_bert3d.data.jpeg_frames import encode_jpeg
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.synthetic import write_synthetic_dataset
from keras_bert3d.cli import main as cli_main
from keras_bert3d.training import evaluate, evaluation
from models.tiny_presets import TINY_R2PLUS1D_BERT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 3
TINY = TINY_R2PLUS1D_BERT
PRESET = "rgb_r2plus1d_32f_34_bert10"


def _tiny_model(**extra):
    return keras_bert3d.build_model(PRESET, NUM_CLASSES, **TINY, **extra)


def _write_config(path, data, overrides=None):
    config = {"name": "tiny", "model": {"preset": PRESET, "num_classes": NUM_CLASSES, "overrides": overrides or TINY},
              "data": data}
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic videos (UCF101 layout), a saved tiny model and a config naming them."""
    folder = tmp_path_factory.mktemp("evaluate")
    write_synthetic_dataset(folder / "videos", num_classes=NUM_CLASSES, videos_per_class=4, num_frames=24,
                            size=(64, 48), seed=1)
    model = _tiny_model()
    model.save(folder / "tiny.keras")
    config = _write_config(folder / "config.yaml", {"dataset": "ucf101", "root": str(folder / "videos")})
    return folder, model, config


def _expected_logits(model, index, clips, crops):
    """The protocol by hand: every view of a video through the model, raw logits averaged."""
    dataset, _ = make_dataset(index, model.preprocessing, mode="test", clips_per_video=clips, crops_per_clip=crops)
    logits, labels = [], []
    for views, label in dataset:
        logits.append(model.predict(views.numpy(), verbose=0).mean(axis=0))
        labels.append(int(label))
    return np.array(logits), np.array(labels)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("clips,crops", [("cover", 10), (2, 3)])
def test_keras_file_protocols(synthetic, tmp_path, clips, crops, capsys):
    folder, model, config = synthetic
    out = tmp_path / "eval"
    args = [str(folder / "tiny.keras"), "--config", config, "--clips", str(clips), "--crops", str(crops),
            "--view-batch", "7", "--output", str(out), "--quiet"]
    assert cli_main(["evaluate", *args]) == 0
    index = build_index("ucf101", folder / "videos", subset="test")
    expected, labels = _expected_logits(model, index, clips, crops)
    saved = np.load(out / "logits.npz")
    np.testing.assert_allclose(saved["logits"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(saved["labels"], labels)
    assert list(saved["videos"]) == [os.path.splitext(os.path.basename(r.path))[0] for r in index]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == len(index) == len(labels)
    assert metrics["top1"] == pytest.approx(evaluation.top_k_accuracy(expected, labels, 1))
    assert metrics["top5"] == 1.0  # 3 classes: top-5 covers all
    assert metrics["mean_class_accuracy"] == pytest.approx(
        evaluation.mean_class_accuracy(labels, expected.argmax(1), NUM_CLASSES))
    assert metrics["protocol"] == {"clips": clips, "crops": crops, "view_batch": 7}
    views_per_video = metrics["mean_views"]
    assert views_per_video % crops == 0 and views_per_video >= crops * (1 if clips == "cover" else clips)
    rows = _read_csv(out / "per_class.csv")
    assert [r["class"] for r in rows] == index.class_names
    assert sum(int(r["videos"]) for r in rows) == len(index)
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    predictions = _read_csv(out / "predictions.csv")
    assert [int(p["predicted"]) for p in predictions] == expected.argmax(1).tolist()
    assert "top-1" in capsys.readouterr().out


def test_run_directory(synthetic, tmp_path):
    folder, model, config = synthetic
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    model.save(run / "best.keras")
    with open(config) as src, open(run / "config.yaml", "w") as dst:
        dst.write(src.read())
    (run / "class_names.json").write_text(json.dumps(["a", "b", "c"]))
    assert cli_main(["evaluate", str(run), "--clips", "center", "--crops", "1", "--limit", "4", "--quiet"]) == 0
    metrics = json.loads((run / "eval_centerx1" / "metrics.json").read_text())
    assert metrics["videos"] == 4 and metrics["model"].endswith("best.keras")
    assert cli_main(["evaluate", str(run), "--checkpoint", "last", "--quiet"]) == 2  # no last.keras


def test_skipped_video(synthetic, tmp_path, capsys):
    folder, _, config = synthetic
    videos = tmp_path / "videos"
    shutil.copytree(folder / "videos", videos)
    index = build_index("ucf101", videos, subset="test")
    broken = index.records[1].path
    with open(broken, "r+b") as f:
        f.truncate(200)
    out = tmp_path / "eval"
    assert cli_main(["evaluate", str(folder / "tiny.keras"), "--config", config, f"data.root={videos}", "--clips", "center",
                          "--crops", "1", "--output", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped_videos"] == 1 and metrics["videos"] == len(index) - 1
    names = [os.path.splitext(os.path.basename(r.path))[0] for r in index]
    assert list(np.load(out / "logits.npz")["videos"]) == names[:1] + names[2:]
    assert "1 bad video skipped" in capsys.readouterr().err


def test_errors_and_help(synthetic, capsys):
    folder, _, _ = synthetic
    assert cli_main(["evaluate", str(folder / "tiny.keras"), "--quiet"]) == 2
    assert "data.dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["evaluate", str(folder / "tiny.keras"), "--clips", "0"])
    help_text = subprocess.run([sys.executable, os.path.join(ROOT, "training", "evaluate.py"), "--help"],
                               capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "--flow-model" in help_text and "--clips" in help_text


def _write_frames(root, settings, videos, num_frames=16, size=(40, 48)):
    """Reference frame folders (img_, flow_x_, flow_y_) and the val_{rgb,flow}_split1.txt lists."""
    rng = np.random.default_rng(0)
    lines = []
    for name, label in videos:
        os.makedirs(root / name)
        for i in range(1, num_frames + 1):
            frame = rng.integers(0, 256, size, dtype=np.uint8)
            (root / name / f"img_{i:05d}.jpg").write_bytes(encode_jpeg(np.stack([frame] * 3, -1), quality=90))
            for axis in "xy":
                (root / name / f"flow_{axis}_{i:05d}.jpg").write_bytes(encode_jpeg(frame[..., None], quality=90))
        lines.append(f"{name} {num_frames} {label}")
    os.makedirs(settings)
    for modality in ("rgb", "flow"):
        (settings / f"val_{modality}_split1.txt").write_text("\n".join(lines) + "\n")
    (settings / "classInd.txt").write_text("\n".join(f"{i + 1} c{i}" for i in range(NUM_CLASSES)) + "\n")


def test_two_stream_fusion(tmp_path):
    _write_frames(tmp_path / "frames", tmp_path / "settings", [("v_a", 0), ("v_b", 1), ("v_c", 2), ("v_d", 1)])
    data = {"dataset": "frames", "root": str(tmp_path / "frames"), "annotations": str(tmp_path / "settings")}
    prep = {"num_frames": 8, "frame_size": [40, 48], "crop_size": 32, "scale": 1 / 255}
    rgb = _tiny_model(preprocessing={**prep, "modality": "rgb", "mean": [0.4] * 3, "std": [0.2] * 3})
    flow = _tiny_model(in_channels=2, preprocessing={**prep, "modality": "flow", "mean": [0.5] * 2, "std": [0.226] * 2})
    rgb.save(tmp_path / "rgb.keras")
    flow.save(tmp_path / "flow.keras")
    config = _write_config(tmp_path / "config.yaml", data)
    common = ["--config", config, "--clips", "cover", "--crops", "10", "--quiet"]
    for name in ("rgb", "flow"):
        assert cli_main(["evaluate", str(tmp_path / f"{name}.keras"), *common, "--output", str(tmp_path / name)]) == 0
    flow_data = [f"--flow-override=data.{key}={value}" for key, value in data.items()]  # a bare .keras, no config
    assert cli_main(["evaluate", str(tmp_path / "rgb.keras"), "--flow-model", str(tmp_path / "flow.keras"), *flow_data,
                          *common, "--output", str(tmp_path / "fused")]) == 0
    streams = {name: np.load(tmp_path / name / "logits.npz") for name in ("rgb", "flow", "fused")}
    assert not np.allclose(streams["rgb"]["logits"], streams["flow"]["logits"])
    expected = (streams["rgb"]["logits"] / np.linalg.norm(streams["rgb"]["logits"], axis=1, keepdims=True)
                + streams["flow"]["logits"] / np.linalg.norm(streams["flow"]["logits"], axis=1, keepdims=True))
    np.testing.assert_allclose(streams["fused"]["logits"], expected, rtol=1e-6)
    assert list(streams["fused"]["videos"]) == ["v_a", "v_b", "v_c", "v_d"]
    metrics = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert metrics["modality"] == "two_stream" and set(metrics["streams"]) == {"rgb", "flow"}
    assert metrics["top1"] == pytest.approx(evaluation.top_k_accuracy(expected, streams["rgb"]["labels"], 1))
