"""Reference keys of the ResNeXt-101 3D family -> :class:`ResNeXt3DBackbone` variables.

In the reference models the backbone is ``features = Sequential(conv1, bn1, relu, maxpool,
layer1..layer4)``, so its keys are ``features.0.weight`` (conv1), ``features.1.*`` (bn1) and
``features.{k+3}.{b}.*`` for block ``b`` of layer ``k``. The FRMB models replace
``features.7.{last}`` by the 2048 -> 512 block; the FRAB models add it as ``mapper.*``.

The backbone-only pretrained file (Kensho Hara's Kinetics ResNeXt-101, and the flow file
loaded the same way) stores ``module.conv1.weight``, ``module.bn1.*``, ``module.layer{k}.*``
and its own classifier ``module.fc.*``; :func:`backbone_file_keys` renames it.
"""
import re

from keras_bert3d.convert.weight_map import WeightMap

# Reference ResNeXtBottleneck sub-module -> Bottleneck3D attribute.
BOTTLENECK_NAMES = (
    ("conv1", "conv_a", "conv"), ("bn1", "bn_a", "bn"),
    ("conv2", "conv_b", "conv"), ("bn2", "bn_b", "bn"),
    ("conv3", "conv_c", "conv"), ("bn3", "bn_c", "bn"),
    ("downsample.0", "shortcut_conv", "conv"), ("downsample.1", "shortcut_bn", "bn"),
)
# Index of each part of the reference ``features`` Sequential.
STEM_CONV_INDEX = 0
STEM_BN_INDEX = 1
FIRST_LAYER_INDEX = 4  # layer1 -> features.4 ... layer4 -> features.7
_BLOCK_NAME = re.compile(r"^layer([1-4])_block(\d+)$")
_FILE_LAYER_KEY = re.compile(r"^layer([1-4])\.(\d+)\.(.*)$")


def _dotted(prefix):
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


def bottleneck_map(layer, prefix=""):
    """A built :class:`Bottleneck3D` at ``prefix`` (e.g. ``"features.5.0."`` or ``"mapper."``).

    Reference sub-names ``conv1, bn1, conv2, bn2, conv3, bn3`` map to ``conv_a, bn_a, conv_b,
    bn_b, conv_c, bn_c``; ``downsample.0`` / ``downsample.1`` to the projection shortcut,
    present only when the layer has one. The grouped ``conv2`` weight (mid, mid/groups, 3, 3, 3)
    transposes to Keras' grouped kernel (3, 3, 3, mid/groups, mid).
    """
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} must be built before its weights can be mapped")
    prefix = _dotted(prefix)
    weights = WeightMap()
    for ref_name, attr, kind in BOTTLENECK_NAMES:
        sublayer = getattr(layer, attr)
        if sublayer is None:  # identity shortcut
            continue
        getattr(weights, kind)(prefix + ref_name, sublayer)
    return weights


def _blocks(backbone):
    """(stage k, block b, layer) of every ``layer{k}_block{b}``, in reference order."""
    found = []
    for layer in backbone.layers:
        match = _BLOCK_NAME.match(layer.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), layer))
    return sorted(found, key=lambda item: item[:2])


def backbone_weight_map(backbone):
    """Reference state-dict keys (``features.*``, and ``mapper.*`` for FRAB) of a built
    :class:`ResNeXt3DBackbone`."""
    weights = WeightMap()
    weights.conv(f"features.{STEM_CONV_INDEX}", backbone.get_layer("stem_conv"))
    weights.bn(f"features.{STEM_BN_INDEX}", backbone.get_layer("stem_bn"))
    for k, b, layer in _blocks(backbone):
        weights.extend(bottleneck_map(layer, f"features.{FIRST_LAYER_INDEX + k - 1}.{b}."))
    if any(layer.name == "mapper" for layer in backbone.layers):
        weights.extend(bottleneck_map(backbone.get_layer("mapper"), "mapper."))
    return weights


def backbone_file_keys(state_dict, feature_reduction=None):
    """Rename the keys of the backbone-only pretrained ResNeXt file to the model's keys.

    ``module.`` is stripped (the reference drops the first 7 characters), ``conv1.weight`` ->
    ``features.0.weight``, ``bn1.*`` -> ``features.1.*``, ``layer{k}.*`` -> ``features.{k+3}.*``;
    the file's classifier ``fc.*`` is dropped. Other keys pass through unchanged, so a load
    reports them as unexpected.

    With ``feature_reduction="frmb"`` the keys of the last layer4 block are dropped as well:
    the reference builds the model from the file and then replaces that block by a freshly
    initialised 2048 -> 512 block, whose shapes the file cannot fill.
    """
    check = (None, "frmb", "frab")
    if feature_reduction not in check:
        raise ValueError(f"`feature_reduction` must be one of {list(check)}; "
                         f"received feature_reduction={feature_reduction!r}")
    renamed = {}
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name == "fc" or name.startswith("fc."):
            continue
        if name.startswith("conv1."):
            name = f"features.{STEM_CONV_INDEX}." + name[len("conv1."):]
        elif name.startswith("bn1."):
            name = f"features.{STEM_BN_INDEX}." + name[len("bn1."):]
        else:
            match = _FILE_LAYER_KEY.match(name)
            if match:
                k, b, rest = int(match.group(1)), match.group(2), match.group(3)
                name = f"features.{FIRST_LAYER_INDEX + k - 1}.{b}.{rest}"
        renamed[name] = value
    if feature_reduction == "frmb":
        layer4 = f"features.{FIRST_LAYER_INDEX + 3}."
        indices = [int(k[len(layer4):].split(".")[0]) for k in renamed if k.startswith(layer4)]
        if indices:
            last = f"{layer4}{max(indices)}."
            renamed = {k: v for k, v in renamed.items() if not k.startswith(last)}
    return renamed
