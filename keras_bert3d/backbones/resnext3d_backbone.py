"""ResNeXt3DBackbone: Kensho Hara's 3D ResNeXt-101 (32 groups) with the paper's FRMB/FRAB."""
import keras

from keras_bert3d.backbones.backbone import FEATURE_REDUCTIONS, Backbone, clip_input
from keras_bert3d.backbones.resnext3d_presets import backbone_presets, reference_params_51
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.bottleneck3d import Bottleneck3D
from keras_bert3d.layers.max_pooling3d import MaxPooling3D
from keras_bert3d.presets.registry import register_presets
from keras_bert3d.validation import (check_bn_args, check_choice, check_positive_int, check_positive_ints,
                                     remat_stages)

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STEM_KERNEL = 7
STEM_STRIDES = (1, 2, 2)
POOL_SIZE = 3
POOL_STRIDE = 2


def mid_filters(filters, cardinality):
    """The bottleneck width of a block with ``filters`` outputs (expansion 2).

    ``planes = filters / 2`` and ``mid = cardinality * int(planes / cardinality)``. The
    reference hard-codes ``int(planes / 32)``; both agree at its cardinality of 32.
    """
    return cardinality * ((filters // 2) // cardinality)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class ResNeXt3DBackbone(Backbone):
    """3D ResNeXt (Hara et al.) feature extractor: stem, four bottleneck stages, optional FR block.

    Graph (channels-last; sizes for the reference 64x112x112 clip):
    - ``stem_conv`` 7x7x7, stride (1, 2, 2), pad 3, no bias -> ``stem_bn`` -> ReLU ->
      ``stem_pool`` 3x3x3 max-pool, stride 2, pad 1 (explicit zero padding: equal to the
      reference's -inf padding after the ReLU). 64x112x112 -> 32x28x28.
    - ``layer{k}_block{b}`` (k = 1..4): :class:`Bottleneck3D` with ``stage_filters[k-1]``
      outputs, grouped 3x3x3 conv with ``cardinality`` groups carrying the stride (1, 2, 2, 2
      for the four stages) and a projection shortcut on block 0 whenever the shape changes
      (shortcut type "B"). Output (4, 4, 4, 2048).
    - ``feature_reduction="frmb"``: the last block of layer4 becomes a ``reduction_dim``
      block (2048 -> 512, mid 256, 32 groups, projection; same name ``layer4_block{n-1}``;
      it keeps its position's stride, 1 in the reference, 2 if layer4 has a single block).
      ``"frab"``: layer4 stays intact and an extra block of that kind, ``mapper``, follows it.

    Args:
        depth: 50, 101 or 152 (stage blocks [3,4,6,3], [3,4,23,3], [3,8,36,3]).
        stage_blocks: 4 block counts; overrides ``depth`` when given (tiny test configs).
        stage_filters: output channels of the four stages.
        cardinality: groups of every grouped conv.
        stem_filters: output channels of ``stem_conv``.
        in_channels: 3 (RGB) or 2 (optical flow x/y).
        feature_reduction: None, ``"frmb"`` or ``"frab"``.
        reduction_dim: output channels of the feature-reduction block.
        num_frames, image_size: static input sizes, or None for dynamic.
        bn_epsilon, bn_momentum: BatchNorm settings (Keras momentum = 1 - PyTorch's 0.1).
        remat: recompute residual blocks in the backward pass instead of keeping their
            activations (``Bottleneck3D(remat=True)``): less memory, more compute; same results.
            ``True``: every block and the feature-reduction block; ``n`` (1-4): the blocks of
            stages 1..n only (the early stages keep the most activations per FLOP).

    ``stage_outputs``: ``stem``, ``stage1``..``stage4`` and, with a feature reduction,
    ``reduction`` (for FRMB the same tensor as ``stage4``; for FRAB the mapper's output).
    """

    def __init__(self, depth=101, stage_blocks=None, stage_filters=(256, 512, 1024, 2048),
                 cardinality=32, stem_filters=64, in_channels=3, feature_reduction=None,
                 reduction_dim=512, num_frames=None, image_size=None, bn_epsilon=1e-5,
                 bn_momentum=0.9, remat=False, **kwargs):
        if stage_blocks is None:
            check_choice("depth", depth, tuple(STAGE_BLOCKS))
            blocks = list(STAGE_BLOCKS[depth])
        else:
            blocks = check_positive_ints("stage_blocks", stage_blocks, 4)
        filters = check_positive_ints("stage_filters", stage_filters, 4)
        check_positive_int("cardinality", cardinality)
        check_positive_int("stem_filters", stem_filters)
        check_positive_int("reduction_dim", reduction_dim)
        for name, value in (("stage_filters", filters), ("reduction_dim", [reduction_dim])):
            if any(mid_filters(f, cardinality) < 1 for f in value):
                raise ValueError(
                    f"`{name}` must be at least 2 * cardinality ({2 * cardinality}) so each "
                    f"group has a channel; received {name}={value!r}")
        check_choice("feature_reduction", feature_reduction, FEATURE_REDUCTIONS)
        check_bn_args(bn_epsilon, bn_momentum)
        recomputed_stages = remat_stages(remat, len(blocks))
        kwargs.setdefault("name", "resnext3d_backbone")
        dtype = kwargs.get("dtype")

        inputs = clip_input(num_frames, image_size, in_channels)
        x = keras.layers.ZeroPadding3D(STEM_KERNEL // 2, name="stem_conv_pad", dtype=dtype)(inputs)
        x = keras.layers.Conv3D(stem_filters, STEM_KERNEL, strides=STEM_STRIDES, padding="valid",
                                use_bias=False, kernel_initializer="he_normal",
                                name="stem_conv", dtype=dtype)(x)
        x = BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                               name="stem_bn", dtype=dtype)(x)
        x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
        x = keras.layers.ZeroPadding3D(POOL_SIZE // 2, name="stem_pool_pad", dtype=dtype)(x)
        x = MaxPooling3D(POOL_SIZE, strides=POOL_STRIDE, padding="valid",
                                   name="stem_pool", dtype=dtype)(x)
        stage_outputs = {"stem": x}

        def block(out, stride, name, remat, projection=None):
            return Bottleneck3D(out, mid_filters(out, cardinality), strides=stride,
                                groups=cardinality, kernel_a=1, kernel_b=3, projection=projection,
                                bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                                remat=remat, name=name, dtype=dtype)

        for k, (num_blocks, out) in enumerate(zip(blocks, filters), start=1):
            for b in range(num_blocks):
                stride = 2 if (k > 1 and b == 0) else 1
                name = f"layer{k}_block{b}"
                if feature_reduction == "frmb" and k == 4 and b == num_blocks - 1:
                    x = block(reduction_dim, stride, name, k <= recomputed_stages, projection=True)(x)
                else:
                    x = block(out, stride, name, k <= recomputed_stages)(x)
            stage_outputs[f"stage{k}"] = x
        if feature_reduction == "frab":
            x = block(reduction_dim, 1, "mapper", remat is True, projection=True)(x)
        if feature_reduction is not None:
            stage_outputs["reduction"] = x

        super().__init__(inputs=inputs, outputs=x, stage_outputs=stage_outputs, **kwargs)
        self._backbone_config = {
            "depth": depth,
            "stage_blocks": None if stage_blocks is None else blocks,
            "stage_filters": filters,
            "cardinality": cardinality,
            "stem_filters": stem_filters,
            "in_channels": in_channels,
            "feature_reduction": feature_reduction,
            "reduction_dim": reduction_dim,
            "num_frames": num_frames,
            "image_size": image_size,
            "bn_epsilon": bn_epsilon,
            "bn_momentum": bn_momentum,
            "remat": remat,
        }



# The family's one registration: its presets with its class (keras-hub's `register_presets`).
register_presets(backbone_presets, ResNeXt3DBackbone, reference_params_51)
