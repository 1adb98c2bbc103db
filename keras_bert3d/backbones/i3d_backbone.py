"""I3DBackbone: the Inception-v1 I3D feature extractor of the reference (piergiaj/pytorch-i3d)."""
import keras

from keras_bert3d.backbones.backbone import FEATURE_REDUCTIONS, Backbone, clip_input
from keras_bert3d.backbones.i3d_presets import backbone_presets, reference_params_51
from keras_bert3d.layers.inception_module import BRANCH_NAMES, InceptionModule
from keras_bert3d.layers.max_pooling3d import MaxPooling3D
from keras_bert3d.layers.unit3d import Unit3D
from keras_bert3d.presets.registry import register_presets
from keras_bert3d.validation import (check_bn_args, check_choice, check_divisible, check_positive_int,
                                     check_positive_ints, remat_stages)

# The 16 end-points in order; end-point k is `features.<k>` in the reference state dict.
ENDPOINTS = (
    "conv3d_1a", "maxpool3d_2a", "conv3d_2b", "conv3d_2c", "maxpool3d_3a",
    "mixed_3b", "mixed_3c", "maxpool3d_4a",
    "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f", "maxpool3d_5a",
    "mixed_5b", "mixed_5c",
)
# Conv units: (kernel, stride); widths come from `stem_filters` in this order.
CONV_UNITS = {"conv3d_1a": (7, 2), "conv3d_2b": (1, 1), "conv3d_2c": (3, 1)}
# Max-pools ('same' padding): (pool size, strides), both (T, H, W).
POOLS = {
    "maxpool3d_2a": ((1, 3, 3), (1, 2, 2)),
    "maxpool3d_3a": ((1, 3, 3), (1, 2, 2)),
    "maxpool3d_4a": ((3, 3, 3), (2, 2, 2)),
    "maxpool3d_5a": ((2, 2, 2), (2, 2, 2)),
}
MIXED = tuple(name for name in ENDPOINTS if name.startswith("mixed_"))
REFERENCE_STEM_FILTERS = (64, 64, 192)
# Branch widths [b0, b1a, b1b, b2a, b2b, b3b] of Mixed_3b ... Mixed_5c (REFERENCE.md 3.3).
REFERENCE_MIXED_FILTERS = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)
# Named groups of end-points for `stage_outputs` (each stage ends at the named end-point).
STAGES = {"stem": "maxpool3d_3a", "stage1": "mixed_3c", "stage2": "mixed_4f", "stage3": "mixed_5c"}


def reduction_branch_filters(reduction_dim):
    """The FRMB/FRAB Inception widths for ``reduction_dim`` output channels.

    The reference block is [192, 96, 192, 24, 64, 64] for 512: branch outputs in the ratio
    3:3:1:1 of ``reduction_dim``, the b1 bottleneck half of its branch, the b2 bottleneck
    3/64 of ``reduction_dim``. Other widths (tiny test configs) keep these ratios.
    """
    check_divisible("reduction_dim", check_positive_int("reduction_dim", reduction_dim), 8)
    eighth = reduction_dim // 8
    return [3 * eighth, max(1, 3 * reduction_dim // 16), 3 * eighth,
            max(1, round(3 * reduction_dim / 64)), eighth, eighth]


def _check_filters(stem_filters, mixed_filters):
    # Conv3d_1a, Conv3d_2b, Conv3d_2c
    stem = check_positive_ints("stem_filters", REFERENCE_STEM_FILTERS if stem_filters is None else stem_filters,
                               len(CONV_UNITS))
    mixed = [list(m) for m in (REFERENCE_MIXED_FILTERS if mixed_filters is None else mixed_filters)]
    if len(mixed) != len(MIXED) or any(len(m) != len(BRANCH_NAMES) for m in mixed):
        raise ValueError(f"`mixed_filters` must be {len(MIXED)} lists of 6 ints (Mixed_3b ... Mixed_5c); "
                         f"received mixed_filters={mixed_filters!r}")
    for m in mixed:
        check_positive_ints("mixed_filters", m, len(BRANCH_NAMES))
    return stem, mixed


@keras.saving.register_keras_serializable(package="keras_bert3d")
class I3DBackbone(Backbone):
    """Inception-v1 I3D (Carreira & Zisserman 2017) as the reference builds it.

    End-points (layer names): ``conv3d_1a`` 7x7x7 stride 2 -> ``maxpool3d_2a`` (1,3,3)/(1,2,2)
    -> ``conv3d_2b`` 1x1x1 -> ``conv3d_2c`` 3x3x3 -> ``maxpool3d_3a`` (1,3,3)/(1,2,2) ->
    ``mixed_3b``, ``mixed_3c`` -> ``maxpool3d_4a`` 3x3x3/2 -> ``mixed_4b`` ... ``mixed_4f`` ->
    ``maxpool3d_5a`` 2x2x2/2 -> ``mixed_5b``, ``mixed_5c``. Every conv and pool uses TF
    'same' padding, as the reference does, so each stride ``s`` maps ``n`` to ``ceil(n / s)``:
    64x224x224 RGB gives (8, 7, 7, 1024).

    Args:
        stem_filters: widths of Conv3d_1a, Conv3d_2b, Conv3d_2c (None: 64, 64, 192).
        mixed_filters: 9 lists ``[b0, b1a, b1b, b2a, b2b, b3b]`` for Mixed_3b ... Mixed_5c
            (None: the reference widths). Narrow values give tiny test configs.
        in_channels: 3 (RGB) or 2 (flow).
        feature_reduction: None; "frmb" replaces Mixed_5c by an Inception module with
            ``reduction_dim`` outputs; "frab" appends that module, named ``mapper``, after
            Mixed_5c. Widths from :func:`reduction_branch_filters`.
        reduction_dim: output channels of the FR module (512 in the reference).
        num_frames, image_size: static input sizes, or None for dynamic ones.
        bn_epsilon, bn_momentum: BatchNorm settings (reference eps 1e-3, PyTorch momentum
            0.01 -> Keras 0.99).
        remat: recompute Inception modules in the backward pass instead of keeping their
            activations (``InceptionModule(remat=True)``): less memory, more compute; same results.
            ``True``: every module and the FR module; ``n`` (1-3): the modules of stages 1..n only
            (Mixed_3*, Mixed_4*, Mixed_5*; the early stages keep the most activations per FLOP).

    ``stage_outputs`` holds every end-point by its layer name, plus ``stem``
    (maxpool3d_3a), ``stage1`` (mixed_3c), ``stage2`` (mixed_4f), ``stage3`` (mixed_5c),
    ``mapper`` (FRAB) and ``reduction`` (the FR module's output, FRMB or FRAB).
    """

    def __init__(self, stem_filters=None, mixed_filters=None, in_channels=3, feature_reduction=None,
                 reduction_dim=512, num_frames=None, image_size=None, bn_epsilon=1e-3,
                 bn_momentum=0.99, remat=False, **kwargs):
        stem, mixed = _check_filters(stem_filters, mixed_filters)
        check_choice("feature_reduction", feature_reduction, FEATURE_REDUCTIONS)
        reduction_filters = reduction_branch_filters(reduction_dim)
        check_bn_args(bn_epsilon, bn_momentum)
        recomputed_stages = remat_stages(remat, len(STAGES) - 1)
        kwargs.setdefault("name", "i3d_backbone")
        bn = {"bn_epsilon": bn_epsilon, "bn_momentum": bn_momentum, "dtype": kwargs.get("dtype")}

        inputs = clip_input(num_frames, image_size, in_channels)
        x = inputs
        outputs = {}
        stem_widths = dict(zip(CONV_UNITS, stem))
        mixed_widths = dict(zip(MIXED, mixed))
        if feature_reduction == "frmb":
            mixed_widths["mixed_5c"] = reduction_filters
        for name in ENDPOINTS:
            if name in CONV_UNITS:
                kernel, stride = CONV_UNITS[name]
                layer = Unit3D(stem_widths[name], kernel, stride, name=name, **bn)
            elif name in POOLS:
                pool, strides = POOLS[name]
                layer = MaxPooling3D(pool, strides=strides, padding="same",
                                                  data_format="channels_last", name=name, dtype=bn["dtype"])
            else:
                stage = int(name[len("mixed_")]) - 2  # mixed_3* -> stage 1 ... mixed_5* -> stage 3
                layer = InceptionModule(mixed_widths[name], remat=stage <= recomputed_stages, name=name, **bn)
            x = layer(x)
            outputs[name] = x
        for stage, name in STAGES.items():
            outputs[stage] = outputs[name]
        if feature_reduction == "frab":
            x = InceptionModule(reduction_filters, remat=remat is True, name="mapper", **bn)(x)
            outputs["mapper"] = x
        if feature_reduction is not None:
            outputs["reduction"] = x

        super().__init__(inputs=inputs, outputs=x, stage_outputs=outputs, **kwargs)
        self._backbone_config = {
            "stem_filters": stem, "mixed_filters": mixed, "in_channels": in_channels,
            "feature_reduction": feature_reduction, "reduction_dim": reduction_dim,
            "num_frames": num_frames, "image_size": image_size,
            "bn_epsilon": bn_epsilon, "bn_momentum": bn_momentum, "remat": remat,
        }



# The family's one registration: its presets with its class (keras-hub's `register_presets`).
register_presets(backbone_presets, I3DBackbone, reference_params_51)
