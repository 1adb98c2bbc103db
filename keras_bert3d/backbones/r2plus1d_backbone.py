"""R2Plus1DBackbone: the R(2+1)D-18/34 feature extractor of the reference (IG65M R(2+1)D-34)."""
import keras

from keras_bert3d.backbones.backbone import Backbone, clip_input
from keras_bert3d.backbones.r2plus1d_presets import backbone_presets, reference_params_51
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.conv2plus1d import Conv2Plus1D, conv_initializer
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock
from keras_bert3d.presets.registry import register_presets
from keras_bert3d.validation import check_bn_args, check_bool, check_choice, check_positive_ints, remat_stages

# Blocks per stage of the torchvision VideoResNet depths.
DEPTH_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
# Stage 1 keeps (T, H, W); stages 2-4 halve all three (resnet.py:_make_layer strides).
STAGE_STRIDES = (1, 2, 2, 2)
# The stem: a (1, 7, 7) spatial conv with stride (1, 2, 2), then a (3, 1, 1) temporal conv.
STEM_SPATIAL_KERNEL = (1, 7, 7)
STEM_SPATIAL_STRIDES = (1, 2, 2)
STEM_TEMPORAL_KERNEL = (3, 1, 1)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class R2Plus1DBackbone(Backbone):
    """R(2+1)D (Tran et al. 2018) as the reference builds it for IG65M weights.

    Stem: ``stem_conv_spatial`` (1, 7, 7), stride (1, 2, 2), pad (0, 3, 3), in ->
    ``stem_filters[0]`` -> ``stem_bn_spatial`` -> ReLU -> ``stem_conv_temporal`` (3, 1, 1),
    pad (1, 0, 0) -> ``stem_filters[1]`` -> ``stem_bn_temporal`` -> ReLU; no max-pool.
    Then four stages of :class:`R2Plus1DBlock` named ``layer{k}_block{b}``; stages 2-4
    halve T, H and W in their first block. The output is the last feature map
    ``(B, T/8, H/16, W/16, stage_filters[-1])``: (4, 7, 7, 512) for 32 x 112 x 112 clips.

    Args:
        depth: 34 ([3, 4, 6, 3] blocks) or 18 ([2, 2, 2, 2]).
        stage_blocks: blocks per stage (4 ints); overrides ``depth``.
        stage_filters: output channels of the four stages.
        stem_filters: (spatial conv, temporal conv) output channels of the stem.
        caffe2_mid: give ``conv2`` of block 0 of stages 2-4 the mid width of the following
            blocks, ``Conv2Plus1D.reference_mid_filters(f, f)`` (288 / 576 / 1152 for the
            real widths), as the reference does to load the Caffe2-trained IG65M weights.
            ``False`` is torchvision's plain R(2+1)D.
        in_channels: 3 (RGB) or 2 (flow).
        feature_reduction: only ``None``: the reference has no FRMB/FRAB block for
            R(2+1)D, whose output is already 512 channels.
        num_frames, image_size: static input sizes (``None``: dynamic).
        bn_epsilon, bn_momentum: every BatchNorm's settings (Keras momentum convention;
            the reference: eps 1e-3, PyTorch momentum 0.9 = Keras 0.1).
        remat: recompute residual blocks in the backward pass instead of keeping their
            activations (``R2Plus1DBlock(remat=True)``): less memory, more compute; same results.
            ``True``: every block; ``n`` (1-4): the blocks of stages 1..n only (stage 1 of
            R(2+1)D-34 keeps most of the activations for a small part of the FLOPs).

    ``stage_outputs``: ``"stem"``, ``"stage1"`` ... ``"stage4"``.
    """

    def __init__(self, depth=34, stage_blocks=None, stage_filters=(64, 128, 256, 512), stem_filters=(45, 64),
                 caffe2_mid=True, in_channels=3, feature_reduction=None, num_frames=None, image_size=None,
                 bn_epsilon=1e-3, bn_momentum=0.1, remat=False, **kwargs):
        check_choice("depth", depth, sorted(DEPTH_BLOCKS))
        if stage_blocks is not None:
            stage_blocks = check_positive_ints("stage_blocks", stage_blocks, len(STAGE_STRIDES))
        blocks_per_stage = list(DEPTH_BLOCKS[depth]) if stage_blocks is None else stage_blocks
        stage_filters = check_positive_ints("stage_filters", stage_filters, len(STAGE_STRIDES))
        stem_filters = check_positive_ints("stem_filters", stem_filters, 2)
        check_bool("caffe2_mid", caffe2_mid)
        if feature_reduction is not None:
            raise ValueError(
                "R(2+1)D has no feature-reduction block in the reference (its output already has "
                f"{stage_filters[-1]} channels): `feature_reduction` must be None; "
                f"received feature_reduction={feature_reduction!r}")
        check_bn_args(bn_epsilon, bn_momentum)
        recomputed_stages = remat_stages(remat, len(STAGE_STRIDES))
        dtype = kwargs.get("dtype")

        def bn(name):
            return BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=name,
                                      dtype=dtype)

        def conv(filters, kernel, strides, name):
            return keras.layers.Conv3D(filters, kernel, strides=strides, padding="valid", use_bias=False,
                                       kernel_initializer=conv_initializer(), name=name, dtype=dtype)

        inputs = clip_input(num_frames, image_size, in_channels)
        # Stem (the reference's R2Plus1dStem = features.0).
        x = keras.layers.ZeroPadding3D([(k // 2, k // 2) for k in STEM_SPATIAL_KERNEL],
                                       name="stem_pad_spatial", dtype=dtype)(inputs)
        x = conv(stem_filters[0], STEM_SPATIAL_KERNEL, STEM_SPATIAL_STRIDES, "stem_conv_spatial")(x)
        x = bn("stem_bn_spatial")(x)
        x = keras.layers.ReLU(name="stem_relu_spatial", dtype=dtype)(x)
        x = keras.layers.ZeroPadding3D([(k // 2, k // 2) for k in STEM_TEMPORAL_KERNEL],
                                       name="stem_pad_temporal", dtype=dtype)(x)
        x = conv(stem_filters[1], STEM_TEMPORAL_KERNEL, 1, "stem_conv_temporal")(x)
        x = bn("stem_bn_temporal")(x)
        x = keras.layers.ReLU(name="stem_relu_temporal", dtype=dtype)(x)
        stage_outputs = {"stem": x}

        # Stages (features.1 .. features.4).
        for k, (blocks, filters, stride) in enumerate(zip(blocks_per_stage, stage_filters, STAGE_STRIDES), 1):
            for b in range(blocks):
                conv2_mid = None
                if caffe2_mid and b == 0 and k > 1:
                    conv2_mid = Conv2Plus1D.reference_mid_filters(filters, filters)
                x = R2Plus1DBlock(filters, strides=stride if b == 0 else 1, conv2_mid_filters=conv2_mid,
                                  bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, remat=k <= recomputed_stages,
                                  name=f"layer{k}_block{b}", dtype=dtype)(x)
            stage_outputs[f"stage{k}"] = x

        super().__init__(inputs=inputs, outputs=x, stage_outputs=stage_outputs, **kwargs)
        self._backbone_config = {
            "depth": depth,
            "stage_blocks": stage_blocks,
            "stage_filters": stage_filters, "stem_filters": stem_filters, "caffe2_mid": caffe2_mid,
            "in_channels": in_channels, "feature_reduction": feature_reduction, "num_frames": num_frames,
            "image_size": image_size, "bn_epsilon": bn_epsilon, "bn_momentum": bn_momentum, "remat": remat,
        }



# The family's one registration: its presets with its class (keras-hub's `register_presets`).
register_presets(backbone_presets, R2Plus1DBackbone, reference_params_51)
