"""FastToSlowFusion: the SlowFast lateral connection from the fast to the slow pathway."""
import keras
from keras import ops

from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.padding import conv_output_size, symmetric_pad
from keras_bert3d.validation import check_bn_args, check_positive_int


@keras.saving.register_keras_serializable(package="keras_bert3d")
class FastToSlowFusion(keras.layers.Layer):
    """Fuse fast-pathway features into the slow pathway (PySlowFast ``FuseFastToSlow``).

    Called on ``[slow, fast]`` (channels-last clips ``(B, T_s, H, W, C_s)`` and
    ``(B, T_f, H, W, C_f)``), it returns ``[concat(slow, relu(bn(conv_f2s(fast)))), fast]``.
    ``conv_f2s`` is a ``(kernel_t, 1, 1)`` conv, stride ``(alpha, 1, 1)``, PyTorch padding
    ``(kernel_t // 2, 0, 0)`` on both sides, no bias, ``C_f -> fusion_ratio * C_f``. Its
    output is concatenated AFTER the slow channels; the fast features pass through.

    Args:
        fusion_ratio: channel ratio of the lateral conv (``FUSION_CONV_CHANNEL_RATIO``).
        kernel_t: temporal kernel of the lateral conv (``FUSION_KERNEL_SZ``, odd).
        alpha: the frame-rate ratio fast / slow, used as the temporal stride.
        bn_epsilon, bn_momentum: BatchNorm settings (Keras momentum = 1 - PyTorch momentum).
    """

    def __init__(self, fusion_ratio=2, kernel_t=7, alpha=4, bn_epsilon=1e-5, bn_momentum=0.9,
                 **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("fusion_ratio", fusion_ratio), ("kernel_t", kernel_t), ("alpha", alpha)):
            check_positive_int(arg, value)
        if kernel_t % 2 == 0:
            raise ValueError(f"`kernel_t` must be odd (symmetric padding); received kernel_t={kernel_t!r}")
        check_bn_args(bn_epsilon, bn_momentum)
        self.fusion_ratio = fusion_ratio
        self.kernel_t = kernel_t
        self.alpha = alpha
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.conv_f2s = None
        self.bn = None

    def _split_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 \
                or not isinstance(input_shape[0], (list, tuple)):
            raise ValueError(f"FastToSlowFusion is called on [slow, fast]; received shapes {input_shape}")
        slow_shape, fast_shape = (tuple(s) for s in input_shape)
        if len(slow_shape) != 5 or len(fast_shape) != 5:
            raise ValueError("Both pathways must be 5-D (B, T, H, W, C); "
                             f"received {slow_shape}, {fast_shape}")
        return slow_shape, fast_shape

    def _fused_frames(self, fast_frames):
        return conv_output_size(fast_frames, self.kernel_t, self.alpha, self.kernel_t // 2)

    def build(self, input_shape):
        slow_shape, fast_shape = self._split_shapes(input_shape)
        fused_frames = self._fused_frames(fast_shape[1])
        if None not in (fused_frames, slow_shape[1]) and fused_frames != slow_shape[1]:
            raise ValueError(
                f"The fast pathway's {fast_shape[1]} frames at stride alpha={self.alpha} give "
                f"{fused_frames} frames, but the slow pathway has {slow_shape[1]}")
        fast_channels = int(fast_shape[-1])
        self.conv_f2s = keras.layers.Conv3D(
            fast_channels * self.fusion_ratio, (self.kernel_t, 1, 1), strides=(self.alpha, 1, 1),
            padding="valid", use_bias=False, kernel_initializer="he_normal", name="conv_f2s",
            dtype=self.dtype_policy)
        self.bn = BatchNormalization(epsilon=self.bn_epsilon, momentum=self.bn_momentum,
                                     name="bn", dtype=self.dtype_policy)
        self.conv_f2s.build(fast_shape)
        self.bn.build((fast_shape[0], fused_frames, *fast_shape[2:4], fast_channels * self.fusion_ratio))

    def call(self, inputs, training=None):
        slow, fast = inputs
        lateral = self.conv_f2s(symmetric_pad(fast, (self.kernel_t // 2, 0, 0)))
        lateral = ops.relu(self.bn(lateral, training=training))
        return [ops.concatenate([slow, lateral], axis=-1), fast]

    def compute_output_shape(self, input_shape):
        slow_shape, fast_shape = self._split_shapes(input_shape)
        channels = slow_shape[-1] + fast_shape[-1] * self.fusion_ratio
        return [(*slow_shape[:-1], channels), fast_shape]

    def get_config(self):
        config = super().get_config()
        config.update({
            "fusion_ratio": self.fusion_ratio, "kernel_t": self.kernel_t, "alpha": self.alpha,
            "bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum,
        })
        return config
