import keras
import numpy as np
import pytest

from harness import random_clip, run_backbone_test, run_fit_step, run_serialization_test
from keras_bert3d.backbones.r2plus1d_backbone import STAGE_STRIDES, R2Plus1DBackbone
from keras_bert3d.layers.conv2plus1d import Conv2Plus1D

TINY = dict(stage_blocks=[1, 1, 1, 1], stage_filters=(4, 8, 8, 8), stem_filters=(3, 4))
# REFERENCE.md section 7: rgb_r2plus1d_32f_34 has 63,518,138 params of which the FC has 26,163.
R2PLUS1D_34_PARAMS = 63_518_138 - 26_163


def conv_out(n, kernel, stride, pad):
    return (n + 2 * pad - kernel) // stride + 1


def expected_shapes(frames, size, stem_channels, stage_filters):
    """Stage output shapes from the strides: stem (1,7,7)/(1,2,2) pad (0,3,3), (3,1,1) stride 1;
    each stage's first block strides (s, s, s) with kernel 3 and padding 1."""
    t, h = frames, conv_out(size, 7, 2, 3)
    shapes = {"stem": (t, h, h, stem_channels)}
    for k, (stride, filters) in enumerate(zip(STAGE_STRIDES, stage_filters), 1):
        t, h = conv_out(t, 3, stride, 1), conv_out(h, 3, stride, 1)
        shapes[f"stage{k}"] = (t, h, h, filters)
    return shapes


def n_params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("in_channels", [3, 2])
def test_tiny_output_and_stage_shapes(in_channels):
    bb = R2Plus1DBackbone(in_channels=in_channels, **TINY)
    x = random_clip(2, 8, 32, channels=in_channels)
    shapes = expected_shapes(8, 32, TINY["stem_filters"][1], TINY["stage_filters"])
    out = bb(x, training=False)
    assert tuple(out.shape) == (2, *shapes["stage4"])
    assert bb.feature_dims == [TINY["stage_filters"][-1]]
    assert sorted(bb.stage_outputs) == ["stage1", "stage2", "stage3", "stage4", "stem"]
    for name, shape in shapes.items():
        assert tuple(bb.stage_outputs[name].shape[1:]) == (None, None, None, shape[-1])
    sub = keras.Model(bb.input, [bb.stage_outputs[n] for n in shapes])
    for name, y in zip(shapes, sub(x, training=False)):
        assert tuple(y.shape) == (2, *shapes[name]), name
    assert tuple(bb.get_layer("stem_conv_spatial").kernel.shape) == (1, 7, 7, in_channels, 3)


def test_layer_names_blocks_and_caffe2_mid():
    bb = R2Plus1DBackbone(stage_blocks=[1, 2, 1, 1], stage_filters=(4, 8, 16, 16), stem_filters=(3, 4))
    names = [layer.name for layer in bb.layers if layer.name.startswith("layer")]
    assert names == ["layer1_block0", "layer2_block0", "layer2_block1", "layer3_block0", "layer4_block0"]
    for name in ("stem_conv_spatial", "stem_bn_spatial", "stem_conv_temporal", "stem_bn_temporal"):
        bb.get_layer(name)
    mid = Conv2Plus1D.reference_mid_filters
    # block 0 of stages 2-4: conv1 from (in, out), conv2 the Caffe2 width mid(out, out).
    for k, (cin, cout) in zip((2, 3, 4), ((4, 8), (8, 16), (16, 16))):
        block = bb.get_layer(f"layer{k}_block0")
        assert block.conv1.mid_filters == mid(cin, cout) and block.conv2.mid_filters == mid(cout, cout)
        assert block.strides == (2, 2, 2)
    assert bb.get_layer("layer2_block1").strides == (1, 1, 1)
    plain = R2Plus1DBackbone(caffe2_mid=False, stage_blocks=[1, 2, 1, 1], stage_filters=(4, 8, 16, 16),
                             stem_filters=(3, 4))
    assert plain.get_layer("layer2_block0").conv2.mid_filters == mid(4, 8)
    assert plain.count_params() < bb.count_params()


def test_depth_sets_blocks_unless_overridden():
    narrow = dict(stage_filters=(2, 2, 2, 2), stem_filters=(2, 2))
    for depth, blocks in ((18, [2, 2, 2, 2]), (34, [3, 4, 6, 3])):
        bb = R2Plus1DBackbone(depth=depth, **narrow)
        counted = [len([la for la in bb.layers if la.name.startswith(f"layer{k}_")]) for k in range(1, 5)]
        assert counted == blocks
    bb = R2Plus1DBackbone(depth=18, stage_blocks=[1, 3, 1, 2], **narrow)
    assert len([la for la in bb.layers if la.name.startswith("layer")]) == 7


@pytest.mark.parametrize("feature_reduction", ["frmb", "frab"])
def test_feature_reduction_is_refused(feature_reduction):
    with pytest.raises(ValueError, match=f"feature_reduction='{feature_reduction}'"):
        R2Plus1DBackbone(feature_reduction=feature_reduction, **TINY)


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=50), "depth=50"),
    (dict(stage_blocks=[1, 1, 1]), r"stage_blocks=\[1, 1, 1\]"),
    (dict(stage_blocks=[1, 0, 1, 1]), "stage_blocks"),
    (dict(stage_filters=(4, 8, 8)), "stage_filters"),
    (dict(stem_filters=(3,)), "stem_filters"),
    (dict(caffe2_mid="yes"), "caffe2_mid='yes'"),
    (dict(in_channels=1), "in_channels=1"),
    (dict(bn_momentum=2.0), "bn_momentum=2.0"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        R2Plus1DBackbone(**{**TINY, **kwargs})


def test_serialization():
    bb = R2Plus1DBackbone(num_frames=8, image_size=32, bn_epsilon=1e-4, **TINY)
    config = run_serialization_test(bb).get_config()
    assert config["stage_blocks"] == [1, 1, 1, 1] and config["stage_filters"] == [4, 8, 8, 8]
    assert config["num_frames"] == 8 and config["feature_reduction"] is None and config["caffe2_mid"] is True
    assert R2Plus1DBackbone.from_config(config).count_params() == bb.count_params()


@pytest.mark.parametrize("in_channels", [3, 2])
def test_backbone_harness(in_channels, tmp_path):
    shapes = {k: (2, *v) for k, v in expected_shapes(8, 32, TINY["stem_filters"][1], TINY["stage_filters"]).items()}
    run_backbone_test(R2Plus1DBackbone, dict(TINY, in_channels=in_channels), random_clip(2, 8, 32, in_channels),
                      shapes["stage4"], shapes, tmp_path)


def test_fit_step_through_tiny_classifier():
    bb = R2Plus1DBackbone(**TINY)
    inp = keras.Input((4, 32, 32, 3))
    x = bb(inp)
    x = keras.layers.GlobalAveragePooling3D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    run_fit_step(keras.Model(inp, out), random_clip(2, 4, 32), np.array([0, 2]))


@pytest.mark.full
def test_full_size_parameter_count_and_output_shape():
    """Build only, no forward pass: the real R(2+1)D-34 backbone."""
    bb = R2Plus1DBackbone()
    # PyTorch counts parameters (conv kernels, BN gamma/beta), not the BN running stats.
    assert n_params(bb.trainable_weights) == R2PLUS1D_34_PARAMS == 63_491_975
    bn_channels = sum(int(w.shape[0]) for w in bb.weights if w.path.endswith("gamma"))
    assert n_params(bb.non_trainable_weights) == 2 * bn_channels
    for frames in (32, 64):
        shapes = expected_shapes(frames, 112, 64, (64, 128, 256, 512))
        symbolic = bb(keras.KerasTensor((1, frames, 112, 112, 3)))
        assert tuple(symbolic.shape) == (1, *shapes["stage4"]) == (1, frames // 8, 7, 7, 512)
