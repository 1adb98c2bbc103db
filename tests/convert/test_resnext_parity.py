"""ResNeXt-101 3D against the reference: the four fixtures loaded through convert/resnext.py, the
full models' key lists (names and shapes, build only), and the pretrained-file renaming."""
import functools

import keras
import numpy as np
import pytest

from harness import (FIXTURES, assert_close, fixture_weights, load_fixture, ncthw_to_nthwc,
                     random_clip)
from keras_bert3d.backbones.resnext3d_backbone import ResNeXt3DBackbone
from keras_bert3d.convert.resnext import backbone_file_keys, backbone_weight_map, bottleneck_map
from keras_bert3d.convert.weight_map import CONV_TRANSPOSE, conv_kernel
from keras_bert3d.layers.bottleneck3d import Bottleneck3D

KEYS = FIXTURES / "keys"


@functools.lru_cache(maxsize=None)
def parity_backbone(feature_reduction):
    """Reference widths, few blocks: enough to hold every fixture's block at its real key."""
    blocks = [1, 1, 1, 3] if feature_reduction == "frmb" else [1, 1, 1, 1]
    return ResNeXt3DBackbone(stage_blocks=blocks, feature_reduction=feature_reduction)


def check_report(report, weights, prefixes):
    """Every fixture tensor was loaded, and nothing under the fixture's prefixes is missing."""
    assert not report.unexpected, report.summary()
    assert sorted(report.loaded) == sorted(weights)
    assert all(k.startswith(prefixes) for k in weights)
    stray = [k for k in report.missing if k.startswith(prefixes)]
    assert not stray, stray


def run_parity(name, prefixes, backbone, start, end):
    arrays, tol = load_fixture(name)
    weights = fixture_weights(arrays)
    check_report(backbone_weight_map(backbone).load(weights), weights, prefixes)
    start = backbone.input if start is None else backbone.get_layer(start).output
    model = keras.Model(start, backbone.get_layer(end).output)
    out = model(ncthw_to_nthwc(arrays["input"]), training=False)
    return assert_close(out, ncthw_to_nthwc(arrays["output"]), tol, name)


def test_stem_parity():
    run_parity("resnext_stem", ("features.0.", "features.1."), parity_backbone("frmb"), None,
               "stem_pool")


def test_layer2_block0_parity():
    run_parity("resnext_layer2_block0", "features.5.0.", parity_backbone("frmb"), "layer1_block0",
               "layer2_block0")


def test_frmb_block_parity():
    run_parity("resnext_frmb_block", "features.7.2.", parity_backbone("frmb"), "layer4_block1",
               "layer4_block2")


def test_frab_mapper_parity():
    run_parity("resnext_frab_mapper", "mapper.", parity_backbone("frab"), "layer4_block0", "mapper")


def test_bottleneck_map_standalone():
    """The block-level helper on a standalone layer: FRAB mapper, keys re-rooted at ``mapper.``."""
    arrays, tol = load_fixture("resnext_frab_mapper")
    x = ncthw_to_nthwc(arrays["input"])
    layer = Bottleneck3D(512, 256, groups=32, projection=True)
    layer.build(x.shape)
    weights = fixture_weights(arrays)
    check_report(bottleneck_map(layer, "mapper").load(weights), weights, "mapper.")
    assert_close(layer(x, training=False), ncthw_to_nthwc(arrays["output"]), tol)


def test_bottleneck_map_identity_shortcut_and_unbuilt():
    layer = Bottleneck3D(16, 8, groups=4)
    with pytest.raises(ValueError, match="built"):
        bottleneck_map(layer, "features.4.1.")
    layer.build((None, 4, 8, 8, 16))
    keys = list(bottleneck_map(layer, "features.4.1.").entries)
    assert not [k for k in keys if "downsample" in k]
    assert keys[0] == "features.4.1.conv1.weight" and len(keys) == 3 * (1 + 4)


# -- full-size key lists (build only, no forward) -------------------------------------------

def read_keys(arch):
    """``key -> shape`` of a reference key list, backbone part only, buffers counted."""
    out = {}
    for line in (KEYS / f"{arch}.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        if key.startswith(("features.", "mapper.")) and not key.endswith("num_batches_tracked"):
            out[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return out


def torch_shape(variable, transform):
    shape = tuple(variable.shape)
    if transform is conv_kernel:
        return tuple(shape[i] for i in np.argsort(CONV_TRANSPOSE))
    assert transform is None
    return shape


def hara_file(arch):
    """Names and shapes of Kensho Hara's backbone-only file (``module.`` prefix, own fc)."""
    layer_of = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                "7": "layer4"}
    out = {"module.fc.weight": (400, 2048), "module.fc.bias": (400,)}
    for key, shape in read_keys(arch).items():
        _, index, rest = key.split(".", 2)
        out[f"module.{layer_of[index]}.{rest}"] = shape
    out["module.bn1.num_batches_tracked"] = ()
    return out


FULL_ARCHS = [
    ("rgb_resneXt3D64f101", None, 3),
    ("rgb_resneXt3D64f101_bert10_FRMB", "frmb", 3),
    ("rgb_resneXt3D64f101_bert10_FRAB", "frab", 3),
    ("flow_resneXt3D64f101", None, 2),
    ("flow_resneXt3D64f101_bert10_FRMB", "frmb", 2),
    ("flow_resneXt3D64f101_bert10_FRAB", "frab", 2),
]


@pytest.mark.full
@pytest.mark.parametrize("arch,feature_reduction,in_channels", FULL_ARCHS)
def test_full_size_keys_and_pretrained_file(arch, feature_reduction, in_channels):
    backbone = ResNeXt3DBackbone(feature_reduction=feature_reduction, in_channels=in_channels)
    weights = backbone_weight_map(backbone)
    mapped = {k: torch_shape(v, fn) for k, (v, fn) in weights.entries.items()}
    expected = read_keys(arch)
    assert sorted(mapped) == sorted(expected)
    assert {k: s for k, s in mapped.items() if s != expected[k]} == {}

    # The pretrained backbone file of the same modality, renamed: everything it holds fits
    # (FRMB: the replaced last layer4 block is dropped); what it lacks is the new FR block.
    file_shapes = hara_file(arch.split("_bert10")[0])
    renamed = backbone_file_keys(file_shapes, feature_reduction=feature_reduction)
    pairs, missing, unexpected = weights.resolve(renamed)
    assert unexpected == []
    assert {dst: renamed[src] for dst, src in pairs} == {dst: mapped[dst] for dst, _ in pairs}
    new_block = {None: (), "frmb": ("features.7.2.",), "frab": ("mapper.",)}[feature_reduction]
    assert sorted(missing) == sorted(k for k in mapped if k.startswith(new_block))


# -- pretrained-file renaming on values --------------------------------------------------------

TINY = dict(stage_blocks=[1, 2, 1, 1], stage_filters=[16, 16, 32, 32], cardinality=4,
            stem_filters=8, reduction_dim=16)


def to_hara_names(state_dict):
    out = {}
    for key, value in state_dict.items():
        _, index, rest = key.split(".", 2)
        name = {"0": "conv1", "1": "bn1"}.get(index, f"layer{int(index) - 3}")
        out[f"module.{name}.{rest}"] = value
    return out


def test_backbone_file_keys_round_trip():
    source = ResNeXt3DBackbone(**TINY)
    rng = np.random.default_rng(0)
    for w in source.weights:  # every tensor, BN statistics included, away from its default
        shape = tuple(w.shape)
        if w.path.endswith(("gamma", "moving_variance")):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        w.assign(value.astype("float32"))
    file = to_hara_names(backbone_weight_map(source).export())
    file["module.fc.weight"] = np.zeros((5, 32), "float32")
    file["module.fc.bias"] = np.zeros((5,), "float32")
    file["module.layer2.0.bn1.num_batches_tracked"] = np.array(3)

    target = ResNeXt3DBackbone(**TINY)
    report = backbone_weight_map(target).load(backbone_file_keys(file), strict=True)
    assert not report.missing and not report.unexpected
    x = random_clip(1, 8, 32, 3)
    expected = np.asarray(source(x, training=False))
    assert np.max(expected) > 0.1  # not a dead (all-zero) feature map
    np.testing.assert_allclose(np.asarray(target(x, training=False)), expected, atol=1e-5)


def test_backbone_file_keys_renaming():
    file = {"module.conv1.weight": 0, "module.bn1.running_var": 1,
            "module.layer1.0.conv2.weight": 2,
            "module.layer4.2.downsample.1.bias": 3, "module.layer4.1.bn3.weight": 4,
            "module.fc.weight": 5, "module.fc.bias": 6, "extra.thing": 7}
    assert backbone_file_keys(file) == {
        "features.0.weight": 0, "features.1.running_var": 1, "features.4.0.conv2.weight": 2,
        "features.7.2.downsample.1.bias": 3, "features.7.1.bn3.weight": 4, "extra.thing": 7}
    assert backbone_file_keys({k[len("module."):]: v for k, v in file.items()
                               if k.startswith("module.")}) == {
        k: v for k, v in backbone_file_keys(file).items() if k != "extra.thing"}
    frmb = backbone_file_keys(file, feature_reduction="frmb")
    assert "features.7.2.downsample.1.bias" not in frmb and "features.7.1.bn3.weight" in frmb
    with pytest.raises(ValueError, match="feature_reduction='FRMB'"):
        backbone_file_keys(file, feature_reduction="FRMB")
