"""I3DBackbone: tiny-config shapes (RGB / flow, each feature reduction), config, saving, fit, full size."""
import keras
import numpy as np
import pytest

from harness import random_clip, run_backbone_test, run_fit_step, run_serialization_test
from keras_bert3d.backbones.i3d_backbone import (ENDPOINTS, POOLS, I3DBackbone,
                                                 reduction_branch_filters)
from keras_bert3d.layers.inception_module import InceptionModule

FRAMES, SIZE = 16, 32
TINY_STEM = [8, 8, 12]
TINY_MIXED = [[4, 4, 6, 2, 2, 2], [4, 4, 4, 2, 4, 2]] + [[2, 2, 4, 2, 2, 2]] * 6 + [[4, 2, 4, 2, 4, 4]]
TINY_REDUCTION = 16
CONV1A_STRIDE = (2, 2, 2)


def tiny(**kwargs):
    return I3DBackbone(stem_filters=TINY_STEM, mixed_filters=TINY_MIXED, reduction_dim=TINY_REDUCTION,
                       **kwargs)


def _output_size(frames, size):
    """T, H, W after Conv3d_1a and the four max-pools; TF 'same' maps n -> ceil(n / s)."""
    dims = [frames, size, size]
    for strides in [CONV1A_STRIDE] + [strides for _, strides in POOLS.values()]:
        dims = [-(-n // s) for n, s in zip(dims, strides)]
    return tuple(dims)


def _mixed_out(branches):
    return branches[0] + branches[2] + branches[4] + branches[5]


@pytest.mark.parametrize("in_channels", [3, 2])
@pytest.mark.parametrize("feature_reduction", [None, "frmb", "frab"])
def test_tiny_output_shape(in_channels, feature_reduction):
    backbone = tiny(in_channels=in_channels, feature_reduction=feature_reduction)
    clip = random_clip(2, FRAMES, SIZE, in_channels)
    out = backbone(clip, training=False)
    channels = _mixed_out(TINY_MIXED[-1]) if feature_reduction is None else TINY_REDUCTION
    assert tuple(out.shape) == (2, *_output_size(FRAMES, SIZE), channels)
    assert backbone.feature_dims == [channels]
    assert tuple(backbone.get_layer("conv3d_1a").conv3d.kernel.shape)[3] == in_channels
    layer_names = {layer.name for layer in backbone.layers}
    assert set(ENDPOINTS) <= layer_names
    assert ("mapper" in layer_names) == (feature_reduction == "frab")
    if feature_reduction == "frmb":
        assert backbone.get_layer("mixed_5c").branch_filters == reduction_branch_filters(TINY_REDUCTION)
        assert backbone.get_layer("mixed_5c").input.shape[-1] == _mixed_out(TINY_MIXED[-2])
    if feature_reduction == "frab":
        assert backbone.get_layer("mapper").input.shape[-1] == _mixed_out(TINY_MIXED[-1])


def test_odd_sizes_follow_tf_same():
    backbone = tiny(num_frames=None)
    clip = np.abs(np.random.default_rng(0).normal(size=(1, 9, 27, 23, 3))).astype("float32")
    out = backbone(clip)
    dims = [9, 27, 23]
    for strides in [CONV1A_STRIDE] + [strides for _, strides in POOLS.values()]:
        dims = [-(-n // s) for n, s in zip(dims, strides)]
    assert tuple(out.shape) == (1, *dims, _mixed_out(TINY_MIXED[-1]))


def test_stage_outputs_build_sub_models():
    backbone = tiny(feature_reduction="frab", num_frames=FRAMES, image_size=SIZE)
    stages = backbone.stage_outputs
    assert set(ENDPOINTS) <= set(stages)
    # The stem ends at MaxPool3d_3a: stride 2 in T, 4 x 2 = 8 in H and W, Conv3d_2c's width.
    stem = keras.Model(backbone.input, stages["stem"])
    assert tuple(stem.output.shape) == (None, FRAMES // 2, SIZE // 8, SIZE // 8, TINY_STEM[2])
    assert stages["stage1"] is stages["mixed_3c"] and stages["stage3"] is stages["mixed_5c"]
    assert stages["reduction"] is stages["mapper"] and stages["mapper"] is backbone.output
    head = keras.Model(backbone.get_layer("mixed_5c").output, backbone.get_layer("mapper").output)
    assert head.output.shape[-1] == TINY_REDUCTION


def test_reduction_branch_filters_reproduce_the_reference_block():
    assert reduction_branch_filters(512) == [192, 96, 192, 24, 64, 64]
    for dim in (8, 16, 40, 512, 1024):
        assert _mixed_out(reduction_branch_filters(dim)) == dim


@pytest.mark.parametrize("kwargs", [
    {"feature_reduction": "FRMB"}, {"in_channels": 1}, {"reduction_dim": 100},
    {"stem_filters": [8, 8]}, {"mixed_filters": [[1, 1, 1, 1, 1, 1]] * 8},
    {"mixed_filters": [[1, 1, 1, 1, 1, 0]] * 9}, {"bn_epsilon": -1.0},
])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="received"):
        I3DBackbone(**kwargs)


def test_serialization():
    backbone = tiny(feature_reduction="frmb", in_channels=2)
    revived = run_serialization_test(backbone)
    config = revived.get_config()
    assert config["feature_reduction"] == "frmb" and config["in_channels"] == 2
    assert config["mixed_filters"] == TINY_MIXED
    assert [layer.name for layer in revived.layers] == [layer.name for layer in backbone.layers]
    assert revived.count_params() == backbone.count_params()


def _endpoint_dims(frames, size, last):
    """(T, H, W) after Conv3d_1a and the max-pools up to end-point ``last`` (TF 'same': ceil(n / s))."""
    dims = [frames, size, size]
    for name, strides in [("conv3d_1a", CONV1A_STRIDE)] + [(n, s) for n, (_, s) in POOLS.items()]:
        if ENDPOINTS.index(name) > ENDPOINTS.index(last):
            break
        dims = [-(-n // s) for n, s in zip(dims, strides)]
    return tuple(dims)


@pytest.mark.parametrize("feature_reduction", ["frab", "frmb"])
def test_backbone_harness(feature_reduction, tmp_path):
    frames = 8
    stages = {"stem": (2, *_endpoint_dims(frames, SIZE, "maxpool3d_3a"), TINY_STEM[2]),
              "stage1": (2, *_endpoint_dims(frames, SIZE, "mixed_3c"), _mixed_out(TINY_MIXED[1])),
              "stage2": (2, *_endpoint_dims(frames, SIZE, "mixed_4f"), _mixed_out(TINY_MIXED[6])),
              "reduction": (2, *_output_size(frames, SIZE), TINY_REDUCTION)}
    kwargs = dict(stem_filters=TINY_STEM, mixed_filters=TINY_MIXED, reduction_dim=TINY_REDUCTION,
                  feature_reduction=feature_reduction, num_frames=frames, image_size=SIZE)
    backbone = run_backbone_test(I3DBackbone, kwargs, random_clip(2, frames, SIZE), stages["reduction"], stages,
                                 tmp_path)
    if feature_reduction == "frab":
        assert isinstance(backbone.get_layer("mapper"), InceptionModule)


def test_fit_step_through_a_tiny_classifier():
    backbone = tiny(num_frames=8, image_size=SIZE)
    inputs = keras.Input((8, SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling3D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    run_fit_step(model, random_clip(2, 8, SIZE), np.array([0, 1]),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


# Backbone-only parameter counts (REFERENCE.md 7): PyTorch parameters, i.e. Keras trainable weights.
FULL_SIZE_COUNTS = [
    ({}, 12_287_264),
    ({"feature_reduction": "frmb"}, 10_355_760),
    ({"feature_reduction": "frab"}, 12_287_264 + 925_424),
    ({"in_channels": 2}, 12_287_264 - 64 * 7 * 7 * 7),
]


@pytest.mark.full
@pytest.mark.parametrize("kwargs,expected", FULL_SIZE_COUNTS)
def test_full_size_parameter_count(kwargs, expected):
    backbone = I3DBackbone(**kwargs)  # build only: no forward pass at full size
    count = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert count == expected
    out_channels = 512 if kwargs.get("feature_reduction") else 1024
    assert backbone.feature_dims == [out_channels]
