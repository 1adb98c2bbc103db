"""SlowFastBackbone: tiny configs (shapes from strides, RGB and flow, every FR variant), pathway
sampling, named layers and stage outputs, config, .keras saving, a fit step, argument errors, and
the full-size graphs (build only): output shapes at 64x224x224 and REFERENCE.md section 7 counts."""
import keras
import numpy as np
import pytest

from harness import random_clip, run_backbone_test, run_fit_step, run_serialization_test
from keras_bert3d.backbones.slowfast_backbone import SlowFastBackbone
from keras_bert3d.layers.padding import conv_output_size

BATCH, FRAMES, SIZE = 2, 16, 32
TINY = dict(stage_blocks=[1, 1, 1, 2], slow_width=8, beta_inv=4, reduction_dim=16, fast_reduction_dim=6)
VARIANTS = [(None, None), ("frmb", "early"), ("frab", "early"), ("frmb", "late"), ("frab", "late")]
EXPANSION, SPATIAL_STRIDES = 4, (1, 2, 2, 2)


def spatial_sizes(size):
    """Stem conv (k7 s2 p3), stem pool (k3 s2 p1), then the 1x3x3 convs of s2..s5 (p1)."""
    size = conv_output_size(conv_output_size(size, 7, 2, 3), 3, 2, 1)
    sizes = [size]
    for stride in SPATIAL_STRIDES:
        sizes.append(conv_output_size(sizes[-1], 3, stride, 1))
    return sizes  # [stem, s2, s3, s4, s5]


def expected_shapes(config, frames=FRAMES, size=SIZE):
    slow_frames = len(range(0, frames, config.get("slow_stride", 8)))
    fast_frames = len(range(0, frames, config.get("fast_stride", 2)))
    width = config.get("slow_width", 64)
    fast_width = width // config.get("beta_inv", 8)
    reduction, fusion = config.get("feature_reduction"), config.get("fusion")
    slow_c = config["reduction_dim"] if reduction else width * EXPANSION * 8
    fast_c = config["fast_reduction_dim"] if reduction and fusion == "early" else fast_width * EXPANSION * 8
    s = spatial_sizes(size)[-1]
    return [(BATCH, slow_frames, s, s, slow_c), (BATCH, fast_frames, s, s, fast_c)]


@pytest.mark.parametrize("reduction,fusion", VARIANTS)
def test_tiny_rgb_output_shapes(reduction, fusion):
    config = dict(TINY, feature_reduction=reduction, fusion=fusion)
    bb = SlowFastBackbone(**config)
    outputs = bb(random_clip(BATCH, FRAMES, SIZE), training=False)
    want = expected_shapes(config)
    assert [tuple(o.shape) for o in outputs] == want
    assert bb.feature_dims == [want[0][-1], want[1][-1]]
    assert all(np.all(np.asarray(o) >= 0) for o in outputs)  # both end in a ReLU
    assert ("slow_reduction" in bb.stage_outputs) == (reduction is not None)
    assert ("fast_reduction" in bb.stage_outputs) == (fusion == "early")


@pytest.mark.parametrize("reduction,fusion", [(None, None), ("frab", "early")])
def test_tiny_flow_output_shapes(reduction, fusion):
    config = dict(TINY, in_channels=2, feature_reduction=reduction, fusion=fusion, slow_stride=4,
                  fast_stride=1)
    bb = SlowFastBackbone(**config)
    outputs = bb(random_clip(BATCH, 8, SIZE, channels=2), training=False)
    assert [tuple(o.shape) for o in outputs] == expected_shapes(config, frames=8)
    assert tuple(bb.get_layer("slow_stem_conv").kernel.shape) == (1, 7, 7, 2, 8)
    assert tuple(bb.get_layer("fast_stem_conv").kernel.shape) == (5, 7, 7, 2, 2)


def test_pathway_sampling_and_stage_outputs():
    bb = SlowFastBackbone(**TINY)
    x = random_clip(1, FRAMES, SIZE)
    sampler = keras.Model(bb.input, [bb.get_layer("slow_subsample").output,
                                     bb.get_layer("fast_subsample").output])
    slow, fast = (np.asarray(t) for t in sampler(x))
    np.testing.assert_array_equal(slow, x[:, 0::8])
    np.testing.assert_array_equal(fast, x[:, 0::2])
    sizes, width, fast_width = spatial_sizes(SIZE), TINY["slow_width"], TINY["slow_width"] // TINY["beta_inv"]
    features = keras.Model(bb.input, bb.stage_outputs)(x)
    assert tuple(features["slow_stem"].shape) == (1, 2, sizes[0], sizes[0], width)
    assert tuple(features["fast_stem"].shape) == (1, 8, sizes[0], sizes[0], fast_width)
    for k in range(1, 5):
        s = sizes[k]
        assert tuple(features[f"slow_stage{k}"].shape) == (1, 2, s, s, width * EXPANSION * 2 ** (k - 1))
        assert tuple(features[f"fast_stage{k}"].shape) == (1, 8, s, s, fast_width * EXPANSION * 2 ** (k - 1))
    fuse = bb.get_layer("fast_to_slow_1").output[0]  # slow stem channels + 2 * fast stem channels
    assert fuse.shape[-1] == width + 2 * fast_width


@pytest.mark.parametrize("reduction,fusion", [("frmb", "early"), ("frab", "late")])
def test_backbone_harness(reduction, fusion, tmp_path):
    config = dict(TINY, feature_reduction=reduction, fusion=fusion, num_frames=FRAMES, image_size=SIZE)
    sizes, width = spatial_sizes(SIZE), TINY["slow_width"]
    fast_width = width // TINY["beta_inv"]
    stages = {"slow_stem": (BATCH, 2, sizes[0], sizes[0], width), "fast_stem": (BATCH, 8, sizes[0], sizes[0], fast_width),
              "slow_stage2": (BATCH, 2, sizes[2], sizes[2], width * EXPANSION * 2),
              "fast_stage3": (BATCH, 8, sizes[3], sizes[3], fast_width * EXPANSION * 4),
              "slow_reduction": expected_shapes(config)[0]}
    bb = run_backbone_test(SlowFastBackbone, dict(config, name="sf"), random_clip(BATCH, FRAMES, SIZE),
                           expected_shapes(config), stages, tmp_path)
    config = bb.get_config()
    assert config["stage_blocks"] == [1, 1, 1, 2] and (config["num_frames"], config["image_size"]) == (FRAMES, SIZE)
    assert config["fusion"] == fusion


def test_fit_step():
    bb = SlowFastBackbone(**TINY, feature_reduction="frab", fusion="late")
    inputs = keras.Input((FRAMES, SIZE, SIZE, 3))
    slow, fast = bb(inputs)
    pooled = [keras.layers.GlobalAveragePooling3D()(slow), keras.layers.GlobalAveragePooling3D()(fast)]
    logits = keras.layers.Dense(3)(keras.layers.Concatenate()(pooled))
    model = keras.Model(inputs, logits)
    run_fit_step(model, random_clip(BATCH, FRAMES, SIZE), np.array([0, 2]))


@pytest.mark.parametrize("kwargs,match", [
    ({"depth": 34}, "depth=34"),
    ({"stage_blocks": [1, 1, 1]}, "stage_blocks=\\[1, 1, 1\\]"),
    ({"slow_width": 12, "beta_inv": 8}, "slow_width=12"),
    ({"slow_stride": 6, "fast_stride": 4}, "slow_stride=6"),
    ({"feature_reduction": "FRMB", "fusion": "late"}, "feature_reduction='FRMB'"),
    ({"fusion": "middle"}, "fusion='middle'"),
    ({"feature_reduction": "frab"}, "fusion=None"),
    ({"feature_reduction": "frmb", "fusion": "late", "stage_blocks": [1, 1, 1, 1]}, "2 s5 blocks"),
    ({"reduction_dim": 15}, "reduction_dim=15"),
    ({"in_channels": 1}, "in_channels=1"),
    ({"fusion_kernel": 6}, "fusion_kernel=6"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlowFastBackbone(**dict(TINY, **kwargs))


# Full size, build only. Backbone counts = REFERENCE.md section 7 "used" params - BERT - FC; the body
# (no FR block) is the table's "SlowFast body (no head)".
FULL_COUNTS = {
    (None, None): 33_644_488,
    ("frab", "early"): 42_252_283 - 4_929_920 - 32_691,
    ("frmb", "early"): 35_589_371 - 4_929_920 - 32_691,
    ("frab", "late"): 41_116_155 - 3_955_968 - 39_219,
    ("frmb", "late"): 34_556_411 - 3_955_968 - 39_219,
}


@pytest.mark.full
@pytest.mark.parametrize("reduction,fusion", VARIANTS)
def test_full_size_parameter_count_and_shapes(reduction, fusion):
    bb = SlowFastBackbone(feature_reduction=reduction, fusion=fusion, num_frames=64, image_size=224)
    trainable = sum(int(np.prod(w.shape)) for w in bb.trainable_weights)
    assert trainable == FULL_COUNTS[(reduction, fusion)]
    config = {"feature_reduction": reduction, "fusion": fusion, "reduction_dim": 512,
              "fast_reduction_dim": 128}
    want = [(None, *shape[1:]) for shape in expected_shapes(config, frames=64, size=224)]
    assert [tuple(o.shape) for o in bb.outputs] == want  # slow (8,7,7,2048|512), fast (32,7,7,256|128)
    for k in range(1, 5):
        bb.get_layer(f"fast_to_slow_{k}")
    for pathway in ("slow", "fast"):
        for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
            for b in range(blocks):
                reduced = pathway == "slow" or fusion == "early"
                replaced = stage == 5 and b == 2 and reduction == "frmb" and reduced
                if not replaced:
                    bb.get_layer(f"{pathway}_res{stage}_block{b}")
    if reduction is not None:
        assert bb.get_layer("slow_mapper").filters == 512
    assert any(layer.name == "fast_mapper" for layer in bb.layers) == (fusion == "early")
