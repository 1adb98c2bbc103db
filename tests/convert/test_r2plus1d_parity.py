"""R(2+1)D against the reference: parity fixtures through the converter, and the full key list."""
import re

import keras
import numpy as np
import pytest

from harness import FIXTURES, assert_close, fixture_weights, load_fixture, ncthw_to_nthwc, random_clip
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.convert.r2plus1d import backbone_file_keys, backbone_weight_map, block_map
from keras_bert3d.convert.weight_map import conv_kernel
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock

KEY_FILE = FIXTURES / "keys" / "rgb_r2plus1d_32f_34.txt"
KEY_LINE = re.compile(r"^(\S+) \(([\d, ]*)\)$")


def nthwc_to_ncthw(x):
    return np.transpose(np.asarray(x), (0, 4, 1, 2, 3))


def reference_keys():
    """{key: shape} of the full reference model's state dict, minus the head and counters."""
    out = {}
    for line in KEY_FILE.read_text().splitlines():
        match = KEY_LINE.match(line.strip())
        assert match, line
        key, shape = match.group(1), tuple(int(d) for d in match.group(2).replace(" ", "").split(",") if d)
        if key.startswith("fc_action.") or key.endswith("num_batches_tracked"):
            continue
        out[key] = shape
    return out


@pytest.fixture(scope="module")
def tiny_backbone():
    # Real stem and layer1/layer2 widths (64, 128) so the fixtures' tensors fit; narrow
    # layer3/layer4; two layer1 blocks so that features.1.1 exists.
    return R2Plus1DBackbone(stage_blocks=[2, 1, 1, 1], stage_filters=(64, 128, 8, 8))


def _load(wmap, arrays, prefix):
    report = wmap.load(fixture_weights(arrays))
    assert not report.unexpected, report.summary()
    assert not [k for k in report.missing if k.startswith(prefix)], report.summary()
    assert len(report.loaded) == len([k for k in arrays if k.startswith("w:")])
    return report


# -- standalone blocks ---------------------------------------------------------------------

def test_layer1_block1_standalone():
    arrays, tol = load_fixture("r2plus1d_layer1_block1")
    x = ncthw_to_nthwc(arrays["input"])
    block = R2Plus1DBlock(64)  # 64 -> 64, stride 1, identity shortcut, mid 144
    block.build(x.shape)
    report = block_map(block, "features.1.1").load(fixture_weights(arrays), strict=True)
    assert not report.missing and not report.unexpected
    assert block.conv1.mid_filters == 144 and block.downsample_conv is None
    conv1_out = keras.ops.relu(block.bn1(block.conv1(x, training=False), training=False))
    assert_close(nthwc_to_ncthw(conv1_out), arrays["mid:conv1_out"], tol, "mid:conv1_out")
    assert_close(nthwc_to_ncthw(block(x, training=False)), arrays["output"], tol)


def test_layer2_block0_standalone():
    arrays, tol = load_fixture("r2plus1d_layer2_block0")
    x = ncthw_to_nthwc(arrays["input"])
    block = R2Plus1DBlock(128, strides=2, conv2_mid_filters=288)
    block.build(x.shape)
    report = block_map(block, "features.2.0").load(fixture_weights(arrays), strict=True)
    assert not report.missing and not report.unexpected
    assert block.conv1.mid_filters == 230 and block.conv2.mid_filters == 288
    conv1_out = keras.ops.relu(block.bn1(block.conv1(x, training=False), training=False))
    assert_close(nthwc_to_ncthw(conv1_out), arrays["mid:conv1_out"], tol, "mid:conv1_out")
    shortcut = block.downsample_bn(block.downsample_conv(x), training=False)
    assert_close(nthwc_to_ncthw(shortcut), arrays["mid:downsample_out"], tol, "mid:downsample_out")
    assert_close(nthwc_to_ncthw(block(x, training=False)), arrays["output"], tol)


# -- the same fixtures through a built backbone and backbone_weight_map ----------------------

def test_stem_through_backbone(tiny_backbone):
    arrays, tol = load_fixture("r2plus1d_stem")
    _load(backbone_weight_map(tiny_backbone), arrays, "features.0.")
    stem = keras.Model(tiny_backbone.input, tiny_backbone.stage_outputs["stem"])
    spatial = keras.Model(tiny_backbone.input, tiny_backbone.get_layer("stem_relu_spatial").output)
    x = ncthw_to_nthwc(arrays["input"])
    assert_close(nthwc_to_ncthw(spatial(x, training=False)), arrays["mid:after_spatial_conv_bn_relu"], tol,
                 "mid:after_spatial_conv_bn_relu")
    assert_close(nthwc_to_ncthw(stem(x, training=False)), arrays["output"], tol)


def test_layer1_block1_through_backbone(tiny_backbone):
    arrays, tol = load_fixture("r2plus1d_layer1_block1")
    _load(backbone_weight_map(tiny_backbone), arrays, "features.1.1.")
    sub = keras.Model(tiny_backbone.get_layer("layer1_block0").output,
                      tiny_backbone.get_layer("layer1_block1").output)
    out = sub(ncthw_to_nthwc(arrays["input"]), training=False)
    assert_close(nthwc_to_ncthw(out), arrays["output"], tol)


def test_layer2_block0_through_backbone(tiny_backbone):
    """Also checks the backbone's Caffe2 mid width (288) in block 0 of layer 2."""
    arrays, tol = load_fixture("r2plus1d_layer2_block0")
    _load(backbone_weight_map(tiny_backbone), arrays, "features.2.0.")
    sub = keras.Model(tiny_backbone.stage_outputs["stage1"], tiny_backbone.stage_outputs["stage2"])
    out = sub(ncthw_to_nthwc(arrays["input"]), training=False)
    assert_close(nthwc_to_ncthw(out), arrays["output"], tol)


# -- keys ----------------------------------------------------------------------------------

@pytest.mark.full
def test_full_backbone_produces_every_reference_key_and_shape():
    """Build only (no forward): the real R(2+1)D-34 maps onto the reference key list exactly."""
    expected = reference_keys()
    wmap = backbone_weight_map(R2Plus1DBackbone())
    produced = {}
    for key, (variable, transform) in wmap.entries.items():
        shape = tuple(variable.shape)
        if transform is conv_kernel:  # Keras (kT, kH, kW, in, out) -> PyTorch (out, in, kT, kH, kW)
            shape = (shape[4], shape[3], *shape[:3])
        produced[key] = shape
    assert sorted(set(expected) - set(produced)) == []
    assert sorted(set(produced) - set(expected)) == []
    assert {k: s for k, s in produced.items() if s != expected[k]} == {}
    assert list(produced) == list(expected)  # same order as the reference state dict


def _to_file_keys(state_dict, module=False):
    """Reference model keys -> the IG65M file's torchvision names (the inverse renaming)."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^features\.0\.", "stem.", key)
        key = re.sub(r"^features\.([1-4])\.", r"layer\1.", key)
        out[("module." if module else "") + key] = value
    return out


def test_backbone_file_keys_renames_the_ig65m_names():
    expected = reference_keys()
    file_sd = _to_file_keys({k: None for k in expected})
    assert "stem.0.weight" in file_sd and "layer4.2.conv2.1.running_var" in file_sd
    file_sd.update({"fc.weight": None, "fc.bias": None, "stem.1.num_batches_tracked": None})
    renamed = backbone_file_keys(file_sd)
    assert set(renamed) == set(expected) | {"features.0.1.num_batches_tracked"}
    assert set(backbone_file_keys({"module." + k: v for k, v in file_sd.items()})) == set(renamed)
    assert set(backbone_file_keys({"state_dict": file_sd})) == set(renamed)


@pytest.mark.parametrize("module", [False, True])
def test_file_round_trip_loads_strictly(module):
    config = dict(stage_blocks=[1, 2, 1, 1], stage_filters=(4, 8, 8, 8), stem_filters=(3, 4))
    source = R2Plus1DBackbone(**config)
    rng = np.random.default_rng(0)
    for variable in source.weights:
        variable.assign(rng.uniform(0.5, 1.5, tuple(variable.shape)).astype("float32"))
    file_sd = _to_file_keys(backbone_weight_map(source).export(), module=module)
    file_sd["fc.weight"] = np.zeros((5, 8), "float32")
    target = R2Plus1DBackbone(**config)
    report = backbone_weight_map(target).load(backbone_file_keys(file_sd), strict=True)
    assert len(report.loaded) == len(source.weights)
    x = random_clip(1, 4, 16)
    np.testing.assert_array_equal(np.asarray(target(x, training=False)), np.asarray(source(x, training=False)))
