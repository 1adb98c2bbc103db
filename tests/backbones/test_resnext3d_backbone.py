"""ResNeXt3DBackbone: tiny configs (RGB / flow, each feature reduction), names, config, saving,
a fit step, argument errors, and the full-size parameter counts (build only)."""
import keras
import numpy as np
import pytest

from harness import random_clip, run_backbone_test, run_fit_step, run_serialization_test
from keras_bert3d.backbones.resnext3d_backbone import ResNeXt3DBackbone
from keras_bert3d.layers.padding import conv_output_size

BATCH, FRAMES, SIZE = 2, 12, 40
STATIC_FRAMES, STATIC_SIZE = 16, 24  # down to 1x1x1 before layer4's last block
TINY = dict(stage_blocks=[1, 2, 1, 2], stage_filters=[16, 16, 32, 32], cardinality=4,
            stem_filters=8, reduction_dim=16)
STAGE_STRIDES = (1, 2, 2, 2)


def stage_dims(frames, size):
    """(T, H, W) after the stem and after each stage, from the reference's strides/paddings."""
    t = conv_output_size(frames, 7, 1, 3)
    h = conv_output_size(size, 7, 2, 3)
    t, h = conv_output_size(t, 3, 2, 1), conv_output_size(h, 3, 2, 1)
    dims = {"stem": (t, h, h)}
    for k, stride in enumerate(STAGE_STRIDES, start=1):
        t, h = conv_output_size(t, 3, stride, 1), conv_output_size(h, 3, stride, 1)
        dims[f"stage{k}"] = (t, h, h)
    return dims


def tiny(**overrides):
    return ResNeXt3DBackbone(**{**TINY, **overrides})


@pytest.mark.parametrize("in_channels", [3, 2])
@pytest.mark.parametrize("feature_reduction", [None, "frmb", "frab"])
def test_tiny_output_shapes(in_channels, feature_reduction):
    bb = tiny(in_channels=in_channels, feature_reduction=feature_reduction)
    dims = stage_dims(FRAMES, SIZE)
    out_channels = TINY["stage_filters"][-1] if feature_reduction is None else TINY["reduction_dim"]
    x = random_clip(BATCH, FRAMES, SIZE, in_channels)
    out = np.asarray(bb(x, training=False))
    assert out.shape == (BATCH, *dims["stage4"], out_channels)
    assert np.all(out >= 0)  # post-ReLU features
    assert bb.feature_dims == [out_channels]

    widths = {"stem": TINY["stem_filters"], **{f"stage{k}": f for k, f in
                                               enumerate(TINY["stage_filters"], start=1)}}
    if feature_reduction == "frmb":
        widths["stage4"] = TINY["reduction_dim"]
    expected_keys = set(widths) | ({"reduction"} if feature_reduction else set())
    assert set(bb.stage_outputs) == expected_keys
    for name, width in widths.items():
        assert tuple(bb.stage_outputs[name].shape[1:]) == (None, None, None, width), name
    if feature_reduction:
        assert bb.stage_outputs["reduction"].shape[-1] == TINY["reduction_dim"]

    stem = keras.Model(bb.input, bb.stage_outputs["stem"])
    assert np.asarray(stem(x)).shape == (BATCH, *dims["stem"], TINY["stem_filters"])


def test_static_input_sizes():
    bb = tiny(num_frames=STATIC_FRAMES, image_size=STATIC_SIZE, feature_reduction="frab")
    assert tuple(bb.input.shape) == (None, STATIC_FRAMES, STATIC_SIZE, STATIC_SIZE, 3)
    dims = stage_dims(STATIC_FRAMES, STATIC_SIZE)
    for k in range(1, 5):
        assert tuple(bb.stage_outputs[f"stage{k}"].shape[1:4]) == dims[f"stage{k}"]
    assert tuple(bb.output.shape) == (None, *dims["stage4"], TINY["reduction_dim"])
    out = bb(random_clip(1, STATIC_FRAMES, STATIC_SIZE, 3), training=False)
    assert tuple(out.shape) == (1, *dims["stage4"], TINY["reduction_dim"])


@pytest.mark.parametrize("feature_reduction", [None, "frmb", "frab"])
def test_layer_names_and_blocks(feature_reduction):
    bb = tiny(feature_reduction=feature_reduction)
    names = {layer.name for layer in bb.layers}
    assert {"stem_conv", "stem_bn", "stem_pool"} <= names
    blocks = [f"layer{k}_block{b}" for k, n in enumerate(TINY["stage_blocks"], start=1)
              for b in range(n)]
    assert [n for n in (layer.name for layer in bb.layers) if n.startswith("layer")] == blocks
    assert ("mapper" in names) is (feature_reduction == "frab")
    last = bb.get_layer(blocks[-1])
    reduced = feature_reduction == "frmb"
    assert last.filters == (TINY["reduction_dim"] if reduced else TINY["stage_filters"][-1])
    assert last.groups == TINY["cardinality"]
    first = bb.get_layer("layer2_block0")
    assert first.strides == (2, 2, 2) and first.shortcut_conv is not None
    assert bb.get_layer("layer1_block0").strides == (1, 1, 1)
    assert bb.get_layer("layer2_block1").shortcut_conv is None
    if feature_reduction == "frab":
        mapper = bb.get_layer("mapper")
        assert mapper.filters == TINY["reduction_dim"] and mapper.shortcut_conv is not None


@pytest.mark.parametrize("depth", [50, 101])
def test_depth_sets_stage_blocks(depth):
    narrow = {k: v for k, v in TINY.items() if k != "stage_blocks"}
    bb = ResNeXt3DBackbone(depth=depth, **narrow)
    counts = [sum(layer.name.startswith(f"layer{k}_") for layer in bb.layers) for k in range(1, 5)]
    assert counts == {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]


def test_serialization():
    bb = tiny(feature_reduction="frmb", in_channels=2, num_frames=STATIC_FRAMES,
              bn_epsilon=1e-3)
    revived = run_serialization_test(bb)
    assert revived.get_config()["stage_blocks"] == TINY["stage_blocks"]
    assert revived.count_params() == bb.count_params()


@pytest.mark.parametrize("feature_reduction", ["frab", "frmb"])
def test_backbone_harness(feature_reduction, tmp_path):
    dims = stage_dims(FRAMES, SIZE)
    widths = [TINY["stem_filters"], *TINY["stage_filters"]]
    stages = {name: (BATCH, *dims[name], width) for name, width in zip(["stem", "stage1", "stage2", "stage3"], widths)}
    stages["reduction"] = (BATCH, *dims["stage4"], TINY["reduction_dim"])
    run_backbone_test(ResNeXt3DBackbone, dict(TINY, feature_reduction=feature_reduction),
                      random_clip(BATCH, FRAMES, SIZE), stages["reduction"], stages, tmp_path)


def test_fit_step():
    bb = tiny(feature_reduction="frmb")
    inputs = keras.Input((8, 32, 32, 3))
    x = bb(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    run_fit_step(model, random_clip(BATCH, 8, 32, 3), np.array([0, 2]),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.mark.parametrize("kwargs,match", [
    ({"depth": 34, "stage_blocks": None}, "depth=34"),
    ({"stage_blocks": [1, 1, 1]}, r"stage_blocks=\[1, 1, 1\]"),
    ({"stage_blocks": [1, 0, 1, 1]}, r"stage_blocks=\[1, 0, 1, 1\]"),
    ({"stage_filters": [16, 16, 32]}, r"stage_filters=\[16, 16, 32\]"),
    ({"stage_filters": [16, 4, 32, 32]}, r"stage_filters=\[16, 4, 32, 32\]"),
    ({"cardinality": 0}, "cardinality=0"),
    ({"stem_filters": 2.5}, "stem_filters=2.5"),
    ({"reduction_dim": 6}, r"reduction_dim=\[6\]"),
    ({"feature_reduction": "FRMB"}, "feature_reduction='FRMB'"),
    ({"in_channels": 4}, "in_channels=4"),
    ({"bn_epsilon": 0}, "bn_epsilon=0"),
    ({"bn_momentum": 1.0}, "bn_momentum=1.0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


# Backbone-only parameter counts, REFERENCE.md section 7 (PyTorch parameters = Keras trainable
# weights; BN running statistics are buffers there and non-trainable weights here).
FULL = 47_521_216
FRAB_BLOCK = 1_762_304
FULL_COUNTS = {(None, 3): FULL, ("frmb", 3): 44_196_288, ("frab", 3): FULL + FRAB_BLOCK,
               (None, 2): FULL - 64 * 7 ** 3}


@pytest.mark.full
@pytest.mark.parametrize("feature_reduction,in_channels", list(FULL_COUNTS))
def test_full_size_parameter_count(feature_reduction, in_channels):
    frames, size = 64, 112
    bb = ResNeXt3DBackbone(feature_reduction=feature_reduction, in_channels=in_channels,
                           num_frames=frames, image_size=size)
    trainable = sum(int(np.prod(w.shape)) for w in bb.trainable_weights)
    assert trainable == FULL_COUNTS[(feature_reduction, in_channels)]
    out_channels = 2048 if feature_reduction is None else 512
    assert tuple(bb.output.shape) == (None, *stage_dims(frames, size)["stage4"], out_channels)
    # each BN holds two running statistics per gamma
    bn_gammas = sum(int(np.prod(w.shape)) for w in bb.trainable_weights if w.path.endswith("gamma"))
    assert sum(int(np.prod(w.shape)) for w in bb.non_trainable_weights) == 2 * bn_gammas
