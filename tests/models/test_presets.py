"""Every preset at full size: the reference's parameter count and state-dict keys (build only, no forward)."""
import pathlib

import numpy as np
import pytest

from keras_bert3d.convert.checkpoint import load_reference_weights
from keras_bert3d.models.builder import build_model, get_preset, list_models, resolve_preset
from keras_bert3d.models.describe import count_parameters, describe
from keras_bert3d.presets import PRESETS, REFERENCE_PARAMS_51
from tiny_presets import TINY_R2PLUS1D_BERT, tiny_overrides

KEYS = pathlib.Path(__file__).parent.parent / "fixtures" / "keys"
NAMES = list_models()


def reference_keys(name):
    out = {}
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        if not key.endswith("num_batches_tracked"):
            out[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return out


def test_all_reference_names_are_presets():
    assert len(NAMES) == 27 and set(NAMES) == set(REFERENCE_PARAMS_51)
    assert {p.stem for p in KEYS.glob("*.txt")} <= set(NAMES)


def test_each_family_registers_its_own_presets():
    """Presets live in backbones/<family>_presets.py and are registered with their backbone class."""
    import importlib

    from keras_bert3d import presets as registry
    from keras_bert3d.backbones import I3DBackbone, R2Plus1DBackbone, ResNeXt3DBackbone, SlowFastBackbone

    families = {"r2plus1d": R2Plus1DBackbone, "resnext3d": ResNeXt3DBackbone, "i3d": I3DBackbone,
                "slowfast": SlowFastBackbone}
    seen = []
    for family, cls in families.items():
        module = importlib.import_module(f"keras_bert3d.backbones.{family}_presets")
        assert set(module.backbone_presets) == set(module.reference_params_51) and module.backbone_presets
        assert {p["backbone"]["class"] for p in module.backbone_presets.values()} == {cls.__name__}
        assert set(cls.presets) == set(module.backbone_presets)  # the class lists exactly its family
        assert registry.BACKBONE_CLASSES[cls.__name__] is cls
        seen += list(module.backbone_presets)
    assert sorted(seen) == sorted(NAMES) and len(set(seen)) == len(seen)
    one = {"rgb_r2plus1d_32f_34": PRESETS["rgb_r2plus1d_32f_34"]}
    with pytest.raises(ValueError, match="is for R2Plus1DBackbone, not I3DBackbone"):
        registry.register_presets(one, I3DBackbone)
    changed = {"rgb_r2plus1d_32f_34": dict(PRESETS["rgb_r2plus1d_32f_34"], optimizer="adamw")}
    with pytest.raises(ValueError, match="already registered with another config"):
        registry.register_presets(changed, R2Plus1DBackbone)
    assert PRESETS["rgb_r2plus1d_32f_34"]["optimizer"] == "sgd"  # a refused registration changes nothing


LAYERING = """
import sys
sys.argv[0] = "bert3d"  # the console script's lazy root: nothing but what is imported here loads
from keras_bert3d.presets import registry
print("REGISTRY ALONE", "keras_bert3d.backbones" in sys.modules, len(registry.PRESETS))
from keras_bert3d.backbones.i3d_backbone import I3DBackbone
from keras_bert3d.backbones.backbone import Backbone
print("BACKBONES", len(I3DBackbone.presets), len(Backbone.presets), "keras_bert3d.models" in sys.modules)
from keras_bert3d.models.builder import list_models
print("MODELS", len(list_models()))
"""


def test_the_registry_imports_no_family_and_every_holder_of_a_class_sees_them_all():
    """The registry sits below the backbones: it imports none; importing any backbone registers all four
    families (the backbones package imports them), and the models layer sees all 27."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[2]), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", LAYERING], env=env, capture_output=True, text=True, timeout=300)
    assert "REGISTRY ALONE False 0" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "BACKBONES 8 27 False" in done.stdout and "MODELS 27" in done.stdout, done.stderr[-2000:]


@pytest.mark.full
@pytest.mark.parametrize("name", NAMES)
def test_preset_matches_reference(name):
    model = build_model(name, 51)
    assert count_parameters(model) == REFERENCE_PARAMS_51[name]
    # A state dict with every key and shape of the reference model loads with nothing missing
    # or unexpected (the SlowFast FRMB duplicates and the unused SlowFast head included).
    keys_name = name if (KEYS / f"{name}.txt").exists() else name.replace("_adamw", "")
    state = {k: np.full(shape, 0.5, np.float32) for k, shape in reference_keys(keys_name).items()}
    report = load_reference_weights(model, state, strict=False)
    assert report.missing == [] and report.unexpected == []
    assert np.all(np.asarray(model.get_layer("classifier").kernel) == 0.5)


@pytest.mark.full
@pytest.mark.parametrize("name,frames,tokens", [
    ("rgb_r2plus1d_32f_34_bert10", 32, [[4, 512]]),
    ("rgb_r2plus1d_64f_34_bert10", 64, [[8, 512]]),
    ("rgb_resneXt3D64f101_bert10_FRAB", 64, [[4, 512]]),
    ("rgb_I3D64f_bert2", 64, [[8, 1024]]),
    ("rgb_I3D64f_bert2_FRMB", 64, [[8, 512]]),
    ("rgb_slowfast64f_50_bert10_FRMB_early", 64, [[8, 640]]),
    ("rgb_slowfast64f_50_bert10_FRAB_late", 64, [[8, 512], [32, 256]]),
    ("rgb_resneXt3D64f101_FRMB_lstm", 64, []),
])
def test_tokens_into_bert(name, frames, tokens):
    info = describe(build_model(name, 51), name)
    assert info["frames"] == frames and info["tokens"] == tokens


def test_preprocessing_carried_by_presets():
    for name, preset in PRESETS.items():
        pre = preset["preprocessing"]
        channels = 2 if name.startswith("flow_") else 3
        assert len(pre["mean"]) == len(pre["std"]) == channels
        assert pre["crop_size"] == (112 if ("r2plus1d" in name or "resneXt" in name) else 224)
        assert pre["frame_size"] == ([128, 170] if pre["crop_size"] == 112 else [256, 340])
        assert pre["num_frames"] == (32 if "_32f_" in name else 64)
    assert PRESETS["rgb_resneXt3D64f101"]["preprocessing"]["scale"] == 1.0  # raw 0-255 pixels
    assert PRESETS["flow_resneXt3D64f101"]["classifier"]["dropout"] == 0.7
    assert PRESETS["flow_resneXt3D64f101_bert10_FRMB"]["classifier"]["dropout"] == 0.8


def test_overrides_route_to_backbone_and_classifier():
    _, backbone, classifier = resolve_preset("rgb_r2plus1d_32f_34_bert10", num_heads=4, num_frames=8,
                                             stage_blocks=[1, 1, 1, 1])
    assert classifier["num_heads"] == 4 and backbone["num_frames"] == 8
    assert backbone["stage_blocks"] == [1, 1, 1, 1] and classifier["preprocessing"]["num_frames"] == 8
    assert get_preset("rgb_r2plus1d_32f_34_bert10")["backbone"]["config"]["num_frames"] == 32  # not mutated


def test_unknown_names_and_overrides():
    with pytest.raises(ValueError, match="rgb_r2plus1d_32f_34_bert10"):
        build_model("rgb_r2plus1d_32f_34_bert1", 51)
    with pytest.raises(ValueError, match="num_hedas"):
        build_model("rgb_r2plus1d_32f_34_bert10", 51, num_hedas=4)


def test_tiny_preset_runs_and_attends():
    model = build_model("rgb_r2plus1d_32f_34_bert10", 7, **TINY_R2PLUS1D_BERT)
    x = np.random.default_rng(0).normal(size=(2, 8, 32, 32, 3)).astype("float32")
    out = model.attention_model()(x)
    assert tuple(out["logits"].shape) == (2, 7)
    assert tuple(out["bert"].shape) == (2, 2, 2, 2)  # 8 frames -> 1 token after 3 temporal halvings, + CLS


def test_preprocessing_overrides():
    _, backbone, classifier = resolve_preset("rgb_r2plus1d_32f_34_bert10", image_size=48, frame_size=(48, 64))
    assert classifier["preprocessing"]["frame_size"] == [48, 64] and classifier["preprocessing"]["crop_size"] == 48
    assert "frame_size" not in backbone and "frame_size" not in classifier
    with pytest.raises(ValueError, match="frame_size"):
        resolve_preset("rgb_r2plus1d_32f_34_bert10", image_size=64, frame_size=[48, 64])


@pytest.mark.full
def test_describe_counts_forward_gflops():
    short = describe(build_model("rgb_r2plus1d_32f_34_bert10", 51))
    long = describe(build_model("rgb_r2plus1d_64f_34_bert10", 51))
    assert 290 < short["gflops"] < 320  # R(2+1)D-34 at 32x112^2: about 305 GFLOPs (multiply-add = 2)
    assert abs(long["gflops"] / short["gflops"] - 2.0) < 0.01  # twice the frames, twice the work


def test_fusion_has_one_owner_the_backbone():
    name = "rgb_slowfast64f_50_bert10_FRMB_early"
    _, backbone, classifier = resolve_preset(name, fusion="late")
    assert backbone["fusion"] == "late" and "fusion" not in classifier
    model = build_model(name, 3, **dict(tiny_overrides(name), fusion="late"))
    assert model.backbone.get_config()["fusion"] == "late" and model.get_config()["fusion"] == "late"
    assert sorted(model.bert_layers()) == ["bert_fast", "bert_slow"]  # the late head, on late-reduced pathways
    assert "fast_mapper" not in {layer.name for layer in model.backbone.layers}
    with pytest.raises(ValueError, match="disagrees with the backbone's fusion='late'"):
        model.__class__(model.backbone, 3, pooling="bert", fusion="early")
