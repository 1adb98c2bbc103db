"""SlowFast parity with the reference fixtures (weights loaded through convert/slowfast.py), the key
lists and shapes of the five reference archs (build only), the FRMB duplicate keys and the
PySlowFast file renaming."""
import functools

import keras
import numpy as np
import pytest

from harness import FIXTURES, assert_close, fixture_weights, load_fixture, ncthw_to_nthwc
from keras_bert3d.backbones.slowfast_backbone import SlowFastBackbone
from keras_bert3d.convert.slowfast import backbone_file_keys, backbone_weight_map, mapper_map
from keras_bert3d.convert.weight_map import CONV_TRANSPOSE

ARCHS = {
    "rgb_slowfast64f_50": (None, None),
    "rgb_slowfast64f_50_bert10_FRAB_early": ("frab", "early"),
    "rgb_slowfast64f_50_bert10_FRMB_early": ("frmb", "early"),
    "rgb_slowfast64f_50_bert10_FRAB_late": ("frab", "late"),
    "rgb_slowfast64f_50_bert10_FRMB_late": ("frmb", "late"),
}
NOT_BACKBONE = ("fc_action.", "model.head.", "bert")


@functools.lru_cache(maxsize=3)
def backbone(reduction=None, fusion=None):
    """A full-size SlowFast-R50 (built once per variant; dynamic input sizes)."""
    return SlowFastBackbone(feature_reduction=reduction, fusion=fusion)


def reference_keys(arch):
    """``key -> shape`` of an arch's backbone tensors (no classifier, unused head or BERT)."""
    keys = {}
    for line in (FIXTURES / "keys" / f"{arch}.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        if key.endswith("num_batches_tracked") or key.startswith(NOT_BACKBONE):
            continue
        keys[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return keys


def torch_shape(variable, transform):
    shape = tuple(variable.shape)
    return tuple(shape[i] for i in np.argsort(CONV_TRANSPOSE)) if transform is not None else shape


def load(wmap, state_dict, prefixes):
    """Load a fixture's weights; nothing unexpected, nothing missing under ``prefixes``."""
    report = wmap.load(state_dict)
    assert not report.unexpected, report.summary()
    assert not [k for k in report.missing if k.startswith(prefixes)], report.summary()
    assert len(report.loaded) == len(state_dict)
    return report


def run_and_compare(model, arrays, tol, inputs, outputs):
    results = model([ncthw_to_nthwc(arrays[k]) for k in inputs] if len(inputs) > 1
                    else ncthw_to_nthwc(arrays[inputs[0]]), training=False)
    results = results if isinstance(results, (list, tuple)) else [results]
    return [assert_close(np.asarray(r), ncthw_to_nthwc(arrays[k]), tol, k) for r, k in zip(results, outputs)]


def test_s1_fuse_parity():
    arrays, tol = load_fixture("slowfast_s1_fuse")
    bb = backbone()
    load(backbone_weight_map(bb), fixture_weights(arrays), ("model.s1.", "model.s1_fuse."))
    sub = keras.Model([bb.get_layer("slow_subsample").output, bb.get_layer("fast_subsample").output],
                      bb.get_layer("fast_to_slow_1").output)
    errors = run_and_compare(sub, arrays, tol, ["input_0", "input_1"], ["output_0", "output_1"])
    print("slowfast_s1_fuse max|diff|", errors, "tol", tol)


def test_s2_parity():
    arrays, tol = load_fixture("slowfast_s2")
    bb = backbone()
    load(backbone_weight_map(bb), fixture_weights(arrays), ("model.s2.",))
    sub = keras.Model(bb.get_layer("fast_to_slow_1").output,
                      [bb.stage_outputs["slow_stage1"], bb.stage_outputs["fast_stage1"]])
    errors = run_and_compare(sub, arrays, tol, ["input_0", "input_1"], ["output_0", "output_1"])
    print("slowfast_s2 max|diff|", errors, "tol", tol)


# The mapper fixtures are keyed mapper_slow.* / mapper_fast.* (FRAB early). The same block is
# `mapper.*` in the late models and, for FRMB, the canonical model.s5.pathway{p}_res2.* with the
# mapper name as an alias: re-key the fixture to each variant's own name and load it there.
MAPPER_CASES = [
    ("slowfast_frab_slow_mapper", "slow", "frab", "early", "mapper_slow."),
    ("slowfast_frab_slow_mapper", "slow", "frmb", "early", "mapper_slow."),
    ("slowfast_frab_slow_mapper", "slow", "frab", "late", "mapper."),
    ("slowfast_frab_slow_mapper", "slow", "frmb", "late", "mapper."),
    ("slowfast_early_fast_mapper", "fast", "frab", "early", "mapper_fast."),
    ("slowfast_early_fast_mapper", "fast", "frmb", "early", "mapper_fast."),
]


@pytest.mark.parametrize("fixture,pathway,reduction,fusion,key_prefix", MAPPER_CASES)
def test_mapper_parity(fixture, pathway, reduction, fusion, key_prefix):
    arrays, tol = load_fixture(fixture)
    bb = backbone(reduction, fusion)
    state = {key_prefix + k: v for k, v in fixture_weights(arrays, f"mapper_{pathway}.").items()}
    wmap = backbone_weight_map(bb)
    canonical = "model.s5.pathway{}_res2.".format(0 if pathway == "slow" else 1) if reduction == "frmb" \
        else key_prefix
    load(wmap, state, (canonical,))
    layer = bb.get_layer(f"{pathway}_mapper")
    error, = run_and_compare(keras.Model(layer.input, layer.output), arrays, tol, ["input"], ["output"])
    print(fixture, reduction, fusion, "max|diff|", error, "tol", tol)


def test_mapper_map_standalone():
    arrays, tol = load_fixture("slowfast_early_fast_mapper")
    layer = backbone("frab", "early").get_layer("fast_mapper")
    report = mapper_map(layer, "mapper_fast").load(fixture_weights(arrays), strict=True)
    assert len(report.loaded) == 20  # 4 convs + 4 BNs x 4 tensors


@pytest.mark.parametrize("arch", list(ARCHS))
def test_weight_map_matches_reference_keys(arch):
    wmap = backbone_weight_map(backbone(*ARCHS[arch]))
    want = reference_keys(arch)
    got = {k: torch_shape(v, fn) for k, (v, fn) in wmap.entries.items()}
    got.update({alias: got[key] for alias, key in wmap.aliases.items()})
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}
    _, missing, unexpected = wmap.resolve(dict.fromkeys(want))
    assert missing == [] and unexpected == []


@pytest.mark.parametrize("arch", [a for a, (reduction, _) in ARCHS.items() if reduction == "frmb"])
def test_frmb_either_copy_loads(arch):
    wmap = backbone_weight_map(backbone(*ARCHS[arch]))
    keys = list(reference_keys(arch))
    mapper_keys = [k for k in keys if k.startswith("mapper")]
    assert mapper_keys and all(k in wmap.aliases for k in mapper_keys)
    only_mapper = [k for k in keys if k not in set(wmap.aliases.values())]
    assert len(only_mapper) == len(keys) - len(mapper_keys)
    only_canonical = [k for k in keys if not k.startswith("mapper")]
    for subset in (only_mapper, only_canonical):
        _, missing, unexpected = wmap.resolve(dict.fromkeys(subset))
        assert missing == [] and unexpected == []


def test_backbone_file_keys():
    arch_keys = list(reference_keys("rgb_slowfast64f_50"))
    file_state = {f"module.{k[len('model.'):]}": None for k in arch_keys}
    file_state.update({"module.head.projection.weight": None, "module.head.projection.bias": None,
                       "module.s1.pathway0_stem.bn.num_batches_tracked": None})
    renamed = backbone_file_keys(file_state)
    assert "model.head.projection.weight" not in renamed
    assert set(renamed) == set(arch_keys) | {"model.s1.pathway0_stem.bn.num_batches_tracked"}
    _, missing, unexpected = backbone_weight_map(backbone()).resolve(renamed)
    assert missing == [] and unexpected == []
    plain = backbone_file_keys({"s2.pathway1_res0.branch1.weight": 1, "head.projection.bias": 2})
    assert plain == {"model.s2.pathway1_res0.branch1.weight": 1}
