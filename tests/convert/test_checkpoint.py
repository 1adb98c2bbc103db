"""bert3d convert: reference state dicts (.npz and .pth) -> our models, through the public entry points."""
import numpy as np
import pytest

from keras_bert3d.cli import main
from keras_bert3d.convert.checkpoint import (convert_checkpoint, load_reference_weights, model_weight_map,
                                             read_state_dict)
from keras_bert3d.models.builder import build_model
from models.tiny_presets import TINY_R2PLUS1D_BERT

TINY = dict(TINY_R2PLUS1D_BERT, stage_filters=[8, 16, 32, 64])
ARCH = "rgb_r2plus1d_32f_34_bert10"


def _clip(seed=0):
    return np.random.default_rng(seed).normal(size=(1, 8, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module")
def source():
    """A tiny model with random BN statistics and its reference-named state dict."""
    model = build_model(ARCH, 5, **TINY)
    rng = np.random.default_rng(1)
    for w in model.weights:
        if w.path.endswith(("moving_mean", "gamma", "beta")):
            w.assign(rng.normal(0.5, 0.1, size=w.shape).astype("float32"))
    state = model_weight_map(model).export()
    return model, state


def test_export_uses_reference_names(source):
    _, state = source
    assert state["features.0.0.weight"].shape == (6, 3, 1, 7, 7)
    assert state["bert.transformer_blocks.0.attention.linear_layers.0.weight"].shape == (64, 64)
    assert state["fc_action.weight"].shape == (5, 64)


def test_npz_round_trip(source, tmp_path):
    model, state = source
    path = tmp_path / "ref.npz"
    np.savez(path, **state)
    out = tmp_path / "out.weights.h5"
    converted, report = convert_checkpoint(path, ARCH, 5, out, strict=True, **TINY)
    assert not report.missing and not report.unexpected
    np.testing.assert_allclose(np.asarray(converted(_clip())), np.asarray(model(_clip())), atol=1e-5)
    fresh = build_model(ARCH, 5, **TINY)
    fresh.load_weights(out)
    np.testing.assert_allclose(np.asarray(fresh(_clip())), np.asarray(model(_clip())), atol=1e-5)


def test_pth_with_wrapper_and_module_prefix(source, tmp_path):
    torch = pytest.importorskip("torch")
    model, state = source
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 3, "arch": ARCH, "best_prec1": 50.0,
                "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}}, path)
    read = read_state_dict(path)
    assert set(read) == set(state)
    converted = build_model(ARCH, 5, **TINY)
    report = load_reference_weights(converted, read, strict=True)
    assert not report.missing
    np.testing.assert_allclose(np.asarray(converted(_clip())), np.asarray(model(_clip())), atol=1e-5)


def test_backbone_only_file_fills_backbone_only(source):
    model, state = source
    # The IG65M file's names: stem.* / layer{k}.* and its own 359-class fc.
    ig65m = {}
    for key, value in state.items():
        if key.startswith("features.0."):
            ig65m["stem." + key[len("features.0."):]] = value
        elif key.startswith("features."):
            k, rest = key[len("features."):].split(".", 1)
            ig65m[f"layer{k}.{rest}"] = value
    ig65m["fc.weight"] = np.zeros((359, 64), np.float32)
    ig65m["fc.bias"] = np.zeros((359,), np.float32)
    target = build_model(ARCH, 5, **TINY)
    head_before = np.asarray(target.get_layer("classifier").kernel).copy()
    report = load_reference_weights(target, ig65m)
    assert not report.missing and not report.unexpected
    np.testing.assert_array_equal(np.asarray(target.get_layer("classifier").kernel), head_before)
    sub = target.backbone
    np.testing.assert_allclose(np.asarray(sub(_clip())), np.asarray(model.backbone(_clip())), atol=1e-5)


def test_shape_mismatch_names_key_and_shapes(source):
    _, state = source
    bad = dict(state)
    bad["fc_action.weight"] = np.zeros((7, 64), np.float32)
    with pytest.raises(ValueError, match=r"fc_action\.weight.*\(7, 64\).*\(64, 5\)"):
        load_reference_weights(build_model(ARCH, 5, **TINY), bad)


def test_missing_and_unexpected_are_listed(source):
    _, state = source
    partial = {k: v for k, v in state.items() if not k.startswith("bert.")}
    partial["extra.weight"] = np.zeros(3, np.float32)
    report = load_reference_weights(build_model(ARCH, 5, **TINY), partial)
    assert any(k.startswith("bert.") for k in report.missing)
    assert report.unexpected == ["extra.weight"]
    assert "missing" in report.summary() and "extra.weight" in report.summary()


def test_cli_convert(source, tmp_path, capsys):
    _, state = source
    # The CLI converts full presets; check its errors name the problem, and a real conversion of the
    # smallest full preset's head-only file reports its missing keys.
    assert main(["convert", str(tmp_path / "nope.pth"), "--arch", ARCH, "--num-classes", "5",
                 "-o", str(tmp_path / "x.weights.h5")]) == 2
    assert "nope.pth" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "a.npz"), "--arch", ARCH, "--num-classes", "5",
                 "-o", str(tmp_path / "x.h5")]) == 2
    assert ".weights.h5" in capsys.readouterr().err
    head = {k: v for k, v in state.items() if k.startswith("fc_action")}
    head["fc_action.weight"] = np.ones((5, 1024), np.float32)
    head["fc_action.bias"] = np.ones((5,), np.float32)
    np.savez(tmp_path / "head.npz", **head)
    out = tmp_path / "i3d.weights.h5"
    assert main(["convert", str(tmp_path / "head.npz"), "--arch", "rgb_I3D64f", "--num-classes", "5",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "loaded 2 tensors" in printed and "missing" in printed and out.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="broken.pth"):
        read_state_dict(path)
