"""`bert3d predict`: top classes of a synthetic video from a .keras model and from its SavedModel, the explain
PNG, the progress bar, and the errors a user meets (a video that will not decode, --explain without BERT)."""
import json
import types

import numpy as np
import pytest

from keras_bert3d.cli import COMMANDS, main
from keras_bert3d.cli import predict
from keras_bert3d.data import sampling
from keras_bert3d.data.synthetic import write_synthetic_dataset, write_video
from keras_bert3d.models.builder import build_model
from keras_bert3d.serving.attention import cls_attention, draw_explanation
from keras_bert3d.serving.export import export_saved_model
from models.tiny_presets import TINY_R2PLUS1D_BERT

TINY = dict(TINY_R2PLUS1D_BERT, num_frames=16)
NUM_CLASSES = 5
TEMPORAL_STRIDE = 8  # R(2+1)D: stem and three stride-2 stages in time (REFERENCE.md 1.1)
RED = (230, 30, 30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = write_synthetic_dataset(root / "synthetic", num_classes=2, videos_per_class=2, num_frames=56,
                                   size=(64, 48), formats=("mp4",))
    video = root / "synthetic" / data["videos"][0]["path"]
    model = build_model("rgb_r2plus1d_32f_34_bert10", NUM_CLASSES, **TINY)
    keras_path = root / "tiny.keras"
    model.save(keras_path)
    names = [f"action {i}" for i in range(NUM_CLASSES)]
    export_dir = root / "export"
    export_saved_model(model, str(export_dir), class_names=names, version=1, warmup=False)
    tgap_path = root / "tgap.keras"
    build_model("rgb_r2plus1d_32f_34", NUM_CLASSES, **{k: v for k, v in TINY.items() if k != "num_heads"}
                ).save(tgap_path)
    return types.SimpleNamespace(root=root, video=str(video), video_frames=data["num_frames"], keras=str(keras_path),
                                 export=str(export_dir), names=names, tgap=str(tgap_path))


@pytest.fixture
def bert3d():
    assert "predict" in COMMANDS
    return main


def _json(bert3d, capsys, *argv):
    assert bert3d(["predict", *argv, "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_keras_and_saved_model_agree(setup, bert3d, capsys):
    from_keras = _json(bert3d, capsys, setup.video, "--model", setup.keras)
    from_export = _json(bert3d, capsys, setup.video, "--model", setup.export)  # the folder of versions
    cover = sampling.cover_clips(setup.video_frames, TINY["num_frames"])
    assert from_keras["clips"] == cover[:, [0, -1]].tolist() and from_keras["num_frames"] == setup.video_frames
    for result in (from_keras, from_export):
        p = [row["probability"] for row in result["top"]]
        assert len(p) == 5 and p == sorted(p, reverse=True)
        assert abs(sum(p) - 1) < 1e-5  # five classes: the top five are all of them
    np.testing.assert_allclose([r["probability"] for r in from_export["top"]],
                               [r["probability"] for r in from_keras["top"]], atol=1e-5)
    assert [r["index"] for r in from_export["top"]] == [r["index"] for r in from_keras["top"]]
    assert [r["class"] for r in from_export["top"]] == [setup.names[r["index"]] for r in from_export["top"]]
    assert [r["class"] for r in from_keras["top"]] == [f"class_{r['index']}" for r in from_keras["top"]]


def test_predict_prints_top_classes_and_a_progress_bar(setup, bert3d, capsys, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"label{i}" for i in range(NUM_CLASSES)) + "\n")
    argv = ["predict", setup.video, "--model", setup.keras, "--clips", "6", "--batch-size", "2", "--top", "3",
            "--class-names", str(names)]
    assert bert3d(argv) == 0
    captured = capsys.readouterr()
    assert "6 clip(s) of 16 frames" in captured.out and "top-3 classes:" in captured.out
    assert len([line for line in captured.out.splitlines() if "label" in line and "p=" in line]) == 3
    assert "6/6" in captured.err and "clip" in captured.err  # tqdm: 3 batches of 2 clips


def test_explain_writes_a_picture_of_frames_and_attention(setup, bert3d, capsys, tmp_path):
    frames = np.random.default_rng(0).integers(60, 120, size=(40, 48, 64, 3), dtype=np.uint8)
    frames[:, 8:40, 12:52] = RED  # a large red patch: it survives the resize and centre crop
    video = tmp_path / "red.avi"
    write_video(video, frames)
    out = tmp_path / "explain.png"
    result = _json(bert3d, capsys, str(video), "--model", setup.keras, "--explain", str(out))
    tokens = TINY["num_frames"] // TEMPORAL_STRIDE
    attention = result["explain"]["attention"]["bert"]
    assert len(attention) == tokens and 0 <= result["explain"]["clip"] < len(result["clips"])
    assert abs(sum(attention) + result["explain"]["to_cls"]["bert"] - 1) < 1e-5  # one softmax row
    from PIL import Image

    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert out.stat().st_size > 10_000 and image.shape[0] >= 300 and image.shape[1] >= 800
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert red.sum() > 2000  # the frames are drawn
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 100  # not a blank canvas
    assert bert3d(["predict", str(video), "--model", setup.keras, "--explain", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"CLS attention over {tokens} temporal tokens" in text and f"wrote {out}" in text


def test_a_video_that_will_not_decode_is_named(setup, bert3d, capsys, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 50)
    assert bert3d(["predict", str(broken), "--model", setup.keras, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "not a video" in err
    missing = tmp_path / "missing.avi"
    assert bert3d(["predict", str(missing), "--model", setup.export, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "missing" in err


def test_explain_needs_a_keras_bert_model(setup, bert3d, capsys, tmp_path):
    out = tmp_path / "x.png"
    assert bert3d(["predict", setup.video, "--model", setup.export, "--explain", str(out)]) == 2
    assert ".keras" in capsys.readouterr().err
    assert bert3d(["predict", setup.video, "--model", setup.tgap, "--explain", str(out)]) == 2
    err = capsys.readouterr().err
    assert "BERT" in err and "'tgap'" in err
    assert not out.exists()
    assert bert3d(["predict", setup.video, "--model", str(tmp_path / "nothing.keras")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_flow_models_are_refused():
    client = types.SimpleNamespace(preprocessing={"modality": "flow", "mean": [0.5, 0.5], "std": [0.5, 0.5]})
    with pytest.raises(ValueError, match="flow model"):
        predict._check_rgb(client, "flow_I3D64f.keras")
    predict._check_rgb(types.SimpleNamespace(preprocessing={}), "http://served")  # servers: not known, allowed


def test_cls_attention_is_row_zero_averaged_over_heads():
    scores = np.random.default_rng(1).dirichlet(np.ones(5), size=(2, 3, 5))  # (batch, heads, N + 1, N + 1)
    rows = cls_attention(scores)
    assert rows.shape == (2, 5)
    np.testing.assert_allclose(rows[1], (scores[1, 0, 0] + scores[1, 1, 0] + scores[1, 2, 0]) / 3, atol=1e-12)
    np.testing.assert_allclose(rows.sum(axis=1), 1, atol=1e-12)  # still one distribution over the keys


def test_draw_explanation_with_two_berts(tmp_path):
    """SlowFast late fusion: a slow BERT over 8 tokens and a fast one over 32, one bar chart each."""
    from PIL import Image

    frames = np.zeros((64, 16, 16, 3), np.uint8)
    frames[:, :, :, 2] = 255  # blue frames
    rng = np.random.default_rng(0)
    attention = {"bert_slow": rng.dirichlet(np.ones(9))[1:], "bert_fast": rng.dirichlet(np.ones(33))[1:]}
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    draw_explanation(frames, {"bert_slow": attention["bert_slow"]}, "one", one, np.arange(100, 164))
    draw_explanation(frames, attention, "two", two, np.arange(100, 164))
    small, large = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (one, two))
    assert large.shape[0] > small.shape[0] and large.shape[1] == small.shape[1]  # one more chart row
    blue = (large[..., 2] > 200) & (large[..., 0] < 60) & (large[..., 1] < 60)
    assert blue.sum() > 1000


def test_a_training_runs_class_names_are_found_beside_its_model(setup, bert3d, capsys, tmp_path):
    """Training writes class_names.json into the run folder: predict and export use it without --class-names."""
    import shutil

    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    shutil.copy(setup.keras, run / "best.keras")
    names = [f"run class {i}" for i in range(NUM_CLASSES)]
    (run / "class_names.json").write_text(json.dumps(names))
    result = _json(bert3d, capsys, setup.video, "--model", str(run / "best.keras"))
    assert [r["class"] for r in result["top"]] == [names[r["index"]] for r in result["top"]]
    assert main(["export", str(run / "best.keras"), "--output", str(tmp_path / "export"), "--no-warmup"]) == 0
    assert "wrote" in capsys.readouterr().out
    exported = _json(bert3d, capsys, setup.video, "--model", str(tmp_path / "export"))
    assert [r["class"] for r in exported["top"]] == [names[r["index"]] for r in exported["top"]]
