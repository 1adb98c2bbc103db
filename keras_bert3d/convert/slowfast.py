"""SlowFast reference state dict (rgb_slowfast.py, PySlowFast names) -> SlowFastBackbone weights.

Reference keys (REFERENCE.md 6.3):
- ``model.s1.pathway{0,1}_stem.{conv,bn}``: the slow (0) / fast (1) stems.
- ``model.s{1-4}_fuse.{conv_f2s,bn}``: the lateral fusions after s1..s4.
- ``model.s{2-5}.pathway{p}_res{i}.{branch1,branch1_bn}`` (projection, block 0) and
  ``.branch2.{a,a_bn,b,b_bn,c,c_bn}``.
- FR blocks use ``torchvision``-style sub-names ``conv1,bn1,conv2,bn2,conv3,bn3,downsample.{0,1}``:
  FRAB as ``mapper.*`` (late) or ``mapper_slow.*`` / ``mapper_fast.*`` (early). FRMB stores the
  replaced last s5 block twice, under ``model.s5.pathway{p}_res{n-1}.*`` and under the mapper name;
  the former is canonical here and the latter an alias, so either copy (or both) loads.
``model.head.*`` and ``fc_action.*`` are not part of the backbone.
"""
from keras_bert3d.convert.weight_map import WeightMap

PATHWAYS = ("slow", "fast")  # reference pathway0, pathway1


def stem_map(conv, bn, prefix):
    """A pathway stem: ``{prefix}.conv`` and ``{prefix}.bn`` (prefix ``model.s1.pathway{p}_stem``)."""
    wmap = WeightMap()
    wmap.conv(f"{prefix}.conv", conv)
    wmap.bn(f"{prefix}.bn", bn)
    return wmap


def fuse_map(layer, prefix):
    """A ``FastToSlowFusion``: ``{prefix}.conv_f2s`` and ``{prefix}.bn`` (prefix ``model.s{k}_fuse``)."""
    wmap = WeightMap()
    wmap.conv(f"{prefix}.conv_f2s", layer.conv_f2s)
    wmap.bn(f"{prefix}.bn", layer.bn)
    return wmap


def resblock_map(layer, prefix):
    """A PySlowFast ``ResBlock`` (a ``Bottleneck3D``) at ``prefix`` (``model.s2.pathway0_res0``)."""
    wmap = WeightMap()
    if layer.shortcut_conv is not None:
        wmap.conv(f"{prefix}.branch1", layer.shortcut_conv)
        wmap.bn(f"{prefix}.branch1_bn", layer.shortcut_bn)
    for part in ("a", "b", "c"):
        wmap.conv(f"{prefix}.branch2.{part}", getattr(layer, f"conv_{part}"))
        wmap.bn(f"{prefix}.branch2.{part}_bn", getattr(layer, f"bn_{part}"))
    return wmap


def mapper_map(layer, prefix):
    """The FRMB/FRAB bottleneck (a ``Bottleneck3D``) at ``prefix`` (``mapper``, ``mapper_slow`` ...)."""
    wmap = WeightMap()
    for i, part in enumerate(("a", "b", "c"), start=1):
        wmap.conv(f"{prefix}.conv{i}", getattr(layer, f"conv_{part}"))
        wmap.bn(f"{prefix}.bn{i}", getattr(layer, f"bn_{part}"))
    if layer.shortcut_conv is not None:
        wmap.conv(f"{prefix}.downsample.0", layer.shortcut_conv)
        wmap.bn(f"{prefix}.downsample.1", layer.shortcut_bn)
    return wmap


def _mapper_key(pathway, fusion):
    """The reference attribute of a pathway's FR block: ``mapper`` (late), ``mapper_{slow,fast}`` (early)."""
    return f"mapper_{pathway}" if fusion == "early" else "mapper"


def backbone_weight_map(backbone):
    """The full ``WeightMap`` of a built ``SlowFastBackbone``, keyed by reference state-dict keys."""
    config = backbone.get_config()
    blocks = backbone.stage_blocks
    reduction, fusion = config["feature_reduction"], config["fusion"]
    wmap = WeightMap()
    for p, pathway in enumerate(PATHWAYS):
        wmap.extend(stem_map(backbone.get_layer(f"{pathway}_stem_conv"),
                             backbone.get_layer(f"{pathway}_stem_bn"), f"model.s1.pathway{p}_stem"))
    for k in range(1, 5):
        wmap.extend(fuse_map(backbone.get_layer(f"fast_to_slow_{k}"), f"model.s{k}_fuse"))
    reduced = {"slow": reduction is not None, "fast": reduction is not None and fusion == "early"}
    for stage in range(2, 6):
        for p, pathway in enumerate(PATHWAYS):
            for b in range(blocks[stage - 2]):
                prefix = f"model.s{stage}.pathway{p}_res{b}"
                if stage == 5 and b == blocks[3] - 1 and reduced[pathway] and reduction == "frmb":
                    block = mapper_map(backbone.get_layer(f"{pathway}_mapper"), prefix)
                    wmap.extend(block)
                    wmap.alias_prefix(_mapper_key(pathway, fusion) + ".", prefix + ".")
                else:
                    wmap.extend(resblock_map(backbone.get_layer(f"{pathway}_res{stage}_block{b}"), prefix))
    if reduction == "frab":
        for pathway in PATHWAYS:
            if reduced[pathway]:
                wmap.extend(mapper_map(backbone.get_layer(f"{pathway}_mapper"),
                                       _mapper_key(pathway, fusion)))
    return wmap


def backbone_file_keys(state_dict):
    """PySlowFast's SLOWFAST_8x8_R50 file (``X``) -> the model's keys (``model.X``).

    Strips a ``module.`` (DataParallel) prefix and drops the file's own classifier
    (``head.*``). Pass the file's ``state_dict`` entry, not the whole checkpoint dict.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("head."):
            continue
        out[f"model.{key}"] = value
    return out
