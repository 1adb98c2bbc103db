"""Reference R(2+1)D state-dict keys -> R2Plus1DBackbone variables.

Reference layout (``features = Sequential(stem, layer1..layer4)``, REFERENCE.md 6.3):

- stem ``features.0.{0: spatial conv, 1: BN, 3: temporal conv, 4: BN}``;
- blocks ``features.{k}.{b}.conv{1,2}.0.{0: spatial conv, 1: mid BN, 3: temporal conv}``,
  ``features.{k}.{b}.conv{1,2}.1`` (BN after the Conv2Plus1D) and
  ``features.{k}.{b}.downsample.{0: 1x1x1 conv, 1: BN}``.

The IG65M file (torchvision ``VideoResNet`` names) uses ``stem.*`` and ``layer{k}.*``;
:func:`backbone_file_keys` renames them.
"""
import re

from keras_bert3d.convert.weight_map import WeightMap

# Stage k of the backbone is ``features.{k}`` (``features.0`` is the stem).
NUM_STAGES = 4
_STEM = (("0", "stem_conv_spatial", "conv"), ("1", "stem_bn_spatial", "bn"),
         ("3", "stem_conv_temporal", "conv"), ("4", "stem_bn_temporal", "bn"))
_FILE_STAGE = re.compile(r"^layer([1-9]\d*)\.(.*)$")


def conv2plus1d_map(layer, prefix):
    """A built :class:`Conv2Plus1D` at ``prefix`` (e.g. ``features.1.0.conv1.0``):
    ``{prefix}.0`` spatial conv, ``{prefix}.1`` mid BN, ``{prefix}.3`` temporal conv."""
    _check_built(layer, prefix)
    wmap = WeightMap()
    wmap.conv(f"{prefix}.0", layer.spatial_conv)
    wmap.bn(f"{prefix}.1", layer.spatial_bn)
    wmap.conv(f"{prefix}.3", layer.temporal_conv)
    return wmap


def block_map(layer, prefix):
    """A built :class:`R2Plus1DBlock` at ``prefix`` (e.g. ``features.2.0``)."""
    _check_built(layer, prefix)
    wmap = WeightMap()
    wmap.extend(conv2plus1d_map(layer.conv1, f"{prefix}.conv1.0"))
    wmap.bn(f"{prefix}.conv1.1", layer.bn1)
    wmap.extend(conv2plus1d_map(layer.conv2, f"{prefix}.conv2.0"))
    wmap.bn(f"{prefix}.conv2.1", layer.bn2)
    if layer.downsample_conv is not None:
        wmap.conv(f"{prefix}.downsample.0", layer.downsample_conv)
        wmap.bn(f"{prefix}.downsample.1", layer.downsample_bn)
    return wmap


def backbone_weight_map(backbone, prefix="features"):
    """Every variable of an :class:`R2Plus1DBackbone` under the full reference model's keys."""
    wmap = WeightMap()
    for index, name, kind in _STEM:
        getattr(wmap, kind)(f"{prefix}.0.{index}", backbone.get_layer(name))
    for k in range(1, NUM_STAGES + 1):
        b = 0
        while _has_layer(backbone, f"layer{k}_block{b}"):
            wmap.extend(block_map(backbone.get_layer(f"layer{k}_block{b}"), f"{prefix}.{k}.{b}"))
            b += 1
    return wmap


def backbone_file_keys(state_dict):
    """Rename the IG65M R(2+1)D-34 file's keys to the reference model's ``features.*`` keys.

    ``module.`` is stripped, ``stem.X`` -> ``features.0.X``, ``layer{k}.X`` ->
    ``features.{k}.X``, and the file's own classifier ``fc.*`` is dropped. A checkpoint
    dict with a ``state_dict`` entry is unwrapped. Other keys pass through unchanged
    (they then show up as unexpected when loading).
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("fc."):
            continue
        if key.startswith("stem."):
            key = "features.0." + key[len("stem."):]
        else:
            match = _FILE_STAGE.match(key)
            if match:
                key = f"features.{match.group(1)}.{match.group(2)}"
        out[key] = value
    return out


def _has_layer(model, name):
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True


def _check_built(layer, prefix):
    if not layer.built:
        raise ValueError(f"Build the layer before mapping its weights (layer {layer.name!r} for {prefix!r})")
