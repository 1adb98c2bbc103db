"""SlowFastBackbone: SlowFast-R50 8x8 (PySlowFast SLOWFAST_8x8_R50) with the paper's FRMB/FRAB blocks."""
import keras

from keras_bert3d.backbones.backbone import FEATURE_REDUCTIONS, FUSIONS, Backbone, clip_input
from keras_bert3d.backbones.slowfast_presets import backbone_presets, reference_params_51
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.bottleneck3d import Bottleneck3D
from keras_bert3d.layers.fast_to_slow_fusion import FastToSlowFusion
from keras_bert3d.layers.max_pooling3d import MaxPooling3D
from keras_bert3d.layers.temporal_subsample import TemporalSubsample
from keras_bert3d.presets.registry import register_presets
from keras_bert3d.validation import (check_choice, check_divisible, check_positive_int, check_positive_ints,
                                     remat_stages)

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Per res stage s2..s5 (SLOWFAST_8x8_R50.yaml): temporal kernel of conv a, spatial stride of conv b.
SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (3, 3, 3, 3)
SPATIAL_STRIDES = (1, 2, 2, 2)
# Stems (stem_helper.py): conv kernel per pathway, stride (1,2,2); max-pool (1,3,3) stride (1,2,2).
SLOW_STEM_KERNEL = (1, 7, 7)
FAST_STEM_KERNEL = (5, 7, 7)
BOTTLENECK_EXPANSION = 4


def _apply_stem(x, pathway, kernel, filters, bn_epsilon, bn_momentum, dtype):
    """conv (kernel, stride (1,2,2), pad k//2) -> BN -> ReLU -> max-pool (1,3,3)/(1,2,2) pad (0,1,1)."""
    pad = tuple((k // 2, k // 2) for k in kernel)
    x = keras.layers.ZeroPadding3D(pad, name=f"{pathway}_stem_pad", dtype=dtype)(x)
    x = keras.layers.Conv3D(filters, kernel, strides=(1, 2, 2), padding="valid", use_bias=False,
                            kernel_initializer="he_normal", name=f"{pathway}_stem_conv", dtype=dtype)(x)
    x = BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                           name=f"{pathway}_stem_bn", dtype=dtype)(x)
    x = keras.layers.ReLU(name=f"{pathway}_stem_relu", dtype=dtype)(x)
    # Zero padding equals PyTorch's -inf padding here: the input is >= 0 after the ReLU.
    x = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)), name=f"{pathway}_stem_pool_pad", dtype=dtype)(x)
    return MaxPooling3D((1, 3, 3), strides=(1, 2, 2), padding="valid",
                                     name=f"{pathway}_stem_pool", dtype=dtype)(x)


def _mapper(filters, name, remat, bn_epsilon, bn_momentum, dtype):
    """The FRMB/FRAB block: 1x1x1 -> 3x3x3 -> 1x1x1 bottleneck, in -> filters/2 -> filters."""
    return Bottleneck3D(filters, filters // 2, strides=1, groups=1, kernel_a=1, kernel_b=3,
                        projection=True, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, remat=remat,
                        name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class SlowFastBackbone(Backbone):
    """SlowFast-R50 8x8 taking ONE clip ``(B, T, H, W, C)``; returns ``[slow, fast]`` feature maps.

    The slow pathway sees frames ``0, slow_stride, ...`` and the fast pathway frames
    ``0, fast_stride, ...`` of the clip (64 frames -> 8 slow, 32 fast). Each pathway has
    a stem and four res stages (s2..s5) of ``Bottleneck3D`` blocks; a ``FastToSlowFusion``
    after s1..s4 concatenates the strided fast features to the slow ones. Outputs at
    64x224x224: slow ``(B, 8, 7, 7, 2048)``, fast ``(B, 32, 7, 7, 256)``.

    Feature reduction (the paper's FR blocks; REFERENCE.md 1.3): a bottleneck with a
    3x3x3 middle conv mapping slow 2048 -> ``reduction_dim`` (and, for ``fusion="early"``,
    fast 256 -> ``fast_reduction_dim``). ``"frmb"`` replaces the last s5 block of the
    reduced pathway(s), ``"frab"`` appends the block after s5.

    Layer names: ``{slow,fast}_subsample``, ``{slow,fast}_stem_{conv,bn,pool}``,
    ``fast_to_slow_{1..4}``, ``{slow,fast}_res{2..5}_block{b}``, ``{slow,fast}_mapper``.
    ``stage_outputs``: ``{slow,fast}_stem`` and ``{slow,fast}_stage{1..4}`` (outputs of the stem
    and of res stages s2..s5, before the lateral fusion; with FRMB the reduced pathway's
    ``stage4`` is the FR block's output), plus ``{slow,fast}_reduction`` for reduced pathways.

    Args:
        depth: ResNet depth, 50 or 101 (blocks per stage), unless ``stage_blocks`` is given.
        stage_blocks: blocks of s2..s5 (4 positive ints), overrides ``depth``.
        slow_width: slow stem width (64); stage widths follow as in ResNet.
        beta_inv: slow / fast channel ratio (8).
        fusion_ratio: channel ratio of the lateral convs (2); fusion_kernel: their temporal kernel (7).
        slow_stride, fast_stride: frame strides of the pathway samplers (alpha = slow / fast).
        in_channels: 3 (RGB) or 2 (flow).
        feature_reduction: None, "frmb" or "frab".
        fusion: None, "early" (reduce both pathways) or "late" (reduce the slow pathway only);
            required when ``feature_reduction`` is set.
        reduction_dim, fast_reduction_dim: output channels of the slow / fast FR block.
        num_frames, image_size: static input sizes (None = dynamic).
        bn_epsilon, bn_momentum: BatchNorm settings (Keras momentum convention).
        remat: recompute residual blocks in the backward pass instead of keeping their
            activations (``Bottleneck3D(remat=True)``): less memory, more compute; same results.
            ``True``: every block of both pathways and the FR blocks; ``n`` (1-4): the blocks of
            res stages s2..s(n+1) only (the early stages keep the most activations per FLOP).
    """

    def __init__(self, depth=50, stage_blocks=None, slow_width=64, beta_inv=8, fusion_ratio=2,
                 fusion_kernel=7, slow_stride=8, fast_stride=2, in_channels=3, feature_reduction=None,
                 fusion=None, reduction_dim=512, fast_reduction_dim=128, num_frames=None,
                 image_size=None, bn_epsilon=1e-5, bn_momentum=0.9, remat=False, **kwargs):
        check_choice("depth", depth, tuple(STAGE_BLOCKS))
        if stage_blocks is None:
            blocks = STAGE_BLOCKS[depth]
        else:
            blocks = tuple(check_positive_ints("stage_blocks", stage_blocks, 4))  # s2..s5
        for arg, value in (("slow_width", slow_width), ("beta_inv", beta_inv),
                           ("fusion_ratio", fusion_ratio), ("fusion_kernel", fusion_kernel),
                           ("slow_stride", slow_stride), ("fast_stride", fast_stride),
                           ("reduction_dim", reduction_dim), ("fast_reduction_dim", fast_reduction_dim)):
            check_positive_int(arg, value)
        check_divisible("slow_width", slow_width, beta_inv, "beta_inv")
        check_divisible("slow_stride", slow_stride, fast_stride, "fast_stride")
        if fusion_kernel % 2 == 0:
            raise ValueError(f"`fusion_kernel` must be odd; received fusion_kernel={fusion_kernel!r}")
        for arg, value in (("reduction_dim", reduction_dim), ("fast_reduction_dim", fast_reduction_dim)):
            check_divisible(arg, value, 2, why=f" (mid width = {arg} / 2)")
        check_choice("feature_reduction", feature_reduction, FEATURE_REDUCTIONS)
        check_choice("fusion", fusion, FUSIONS)
        if feature_reduction is not None and fusion is None:
            raise ValueError(f"feature_reduction={feature_reduction!r} needs fusion='early' or 'late' "
                             f"(which pathways to reduce); received fusion={fusion!r}")
        if feature_reduction == "frmb" and blocks[3] < 2:
            raise ValueError("feature_reduction='frmb' replaces the last s5 block and needs at least "
                             f"2 s5 blocks; received stage_blocks={stage_blocks!r}")
        recomputed_stages = remat_stages(remat, len(blocks))
        alpha = slow_stride // fast_stride
        bn = {"bn_epsilon": bn_epsilon, "bn_momentum": bn_momentum, "dtype": kwargs.get("dtype")}

        inputs = clip_input(num_frames, image_size, in_channels)
        slow = TemporalSubsample(slow_stride, name="slow_subsample", dtype=bn["dtype"])(inputs)
        fast = TemporalSubsample(fast_stride, name="fast_subsample", dtype=bn["dtype"])(inputs)
        fast_width = slow_width // beta_inv
        slow = _apply_stem(slow, "slow", SLOW_STEM_KERNEL, slow_width, **bn)
        fast = _apply_stem(fast, "fast", FAST_STEM_KERNEL, fast_width, **bn)
        stage_outputs = {"slow_stem": slow, "fast_stem": fast}
        slow, fast = FastToSlowFusion(fusion_ratio, fusion_kernel, alpha, name="fast_to_slow_1", **bn)(
            [slow, fast])

        reduce = {"slow": feature_reduction is not None,
                  "fast": feature_reduction is not None and fusion == "early"}
        mapper_dims = {"slow": reduction_dim, "fast": fast_reduction_dim}
        kernels = {"slow": SLOW_TEMPORAL_KERNELS, "fast": FAST_TEMPORAL_KERNELS}
        widths = {"slow": slow_width, "fast": fast_width}
        for stage in range(4):
            features = {"slow": slow, "fast": fast}
            for pathway, x in features.items():
                mid = widths[pathway] * 2 ** stage
                for b in range(blocks[stage]):
                    if stage == 3 and b == blocks[3] - 1 and reduce[pathway] and feature_reduction == "frmb":
                        x = _mapper(mapper_dims[pathway], f"{pathway}_mapper", stage < recomputed_stages, **bn)(x)
                        continue
                    stride = SPATIAL_STRIDES[stage] if b == 0 else 1
                    x = Bottleneck3D(mid * BOTTLENECK_EXPANSION, mid, strides=(1, stride, stride),
                                     kernel_a=(kernels[pathway][stage], 1, 1), kernel_b=(1, 3, 3),
                                     zero_init_last_bn=True, remat=stage < recomputed_stages,
                                     name=f"{pathway}_res{stage + 2}_block{b}", **bn)(x)
                stage_outputs[f"{pathway}_stage{stage + 1}"] = x
                features[pathway] = x
            slow, fast = features["slow"], features["fast"]
            if stage < 3:
                slow, fast = FastToSlowFusion(fusion_ratio, fusion_kernel, alpha,
                                              name=f"fast_to_slow_{stage + 2}", **bn)([slow, fast])
        if feature_reduction == "frab":
            slow = _mapper(reduction_dim, "slow_mapper", remat is True, **bn)(slow)
            if reduce["fast"]:
                fast = _mapper(fast_reduction_dim, "fast_mapper", remat is True, **bn)(fast)
        if reduce["slow"]:
            stage_outputs["slow_reduction"] = slow
        if reduce["fast"]:
            stage_outputs["fast_reduction"] = fast

        super().__init__(inputs=inputs, outputs=[slow, fast], stage_outputs=stage_outputs, **kwargs)
        self._backbone_config = {
            "depth": depth, "stage_blocks": None if stage_blocks is None else list(stage_blocks),
            "slow_width": slow_width, "beta_inv": beta_inv, "fusion_ratio": fusion_ratio,
            "fusion_kernel": fusion_kernel, "slow_stride": slow_stride, "fast_stride": fast_stride,
            "in_channels": in_channels, "feature_reduction": feature_reduction, "fusion": fusion,
            "reduction_dim": reduction_dim, "fast_reduction_dim": fast_reduction_dim,
            "num_frames": num_frames, "image_size": image_size, "bn_epsilon": bn_epsilon,
            "bn_momentum": bn_momentum, "remat": remat,
        }
        self.stage_blocks = blocks



# The family's one registration: its presets with its class (keras-hub's `register_presets`).
register_presets(backbone_presets, SlowFastBackbone, reference_params_51)
