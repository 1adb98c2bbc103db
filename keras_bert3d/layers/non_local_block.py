"""NonLocalBlock: the reference's NLBlockND ('embedded' mode, 3-D, with BN) for channels-last clips."""
import math

import keras
from keras import ops
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.validation import check_bn_args


@keras.saving.register_keras_serializable(package="keras_bert3d")
class NonLocalBlock(keras.layers.Layer):
    """Embedded-Gaussian non-local block over all ``P = T*H*W`` positions, with a residual.

    ``(B, T, H, W, C) -> (B, T, H, W, C)``. With ``theta``, ``phi`` and ``g`` 1x1x1 convs
    (with bias) to ``inter_channels``:

        scores = softmax_keys(theta(x) . phi(x)^T / sqrt(P))      # (B, P, P)
        z = w_z_bn(w_z_conv(scores . g(x))) + x

    The scale is ``1 / sqrt(P)``, the number of positions, as the reference's
    ``NLBlockND.forward`` divides by ``sqrt(f.size(-1))``; it is not the usual
    ``1 / sqrt(channels)``. There is no subsampling. ``w_z_bn`` starts with gamma = beta = 0
    (reference, section 4.1 of the non-local paper), so the block starts as the identity.
    The convs start from PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Sublayers: ``g``, ``theta``, ``phi``, ``w_z_conv`` (Conv3D, kernel 1) and ``w_z_bn``.

    Args:
        inter_channels: channels of theta/phi/g; ``None`` means the input's channel count
            (the reference model builds ``NLBlockND(512, inter_channels=512)``).
        bn_epsilon: epsilon of ``w_z_bn`` (reference: 1e-5).
        bn_momentum: momentum of ``w_z_bn`` in the Keras convention (1 - PyTorch's 0.1).
    """

    def __init__(self, inter_channels=None, bn_epsilon=1e-5, bn_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        if inter_channels is not None and (isinstance(inter_channels, bool) or not isinstance(inter_channels, int)
                                           or inter_channels < 1):
            raise ValueError(f"`inter_channels` must be None or a positive int; "
                             f"received inter_channels={inter_channels!r}")
        check_bn_args(bn_epsilon, bn_momentum)
        self.inter_channels = inter_channels
        self.bn_epsilon = float(bn_epsilon)
        self.bn_momentum = float(bn_momentum)
        self.g = self.theta = self.phi = self.w_z_conv = self.w_z_bn = None

    def _conv(self, filters, fan_in, name):
        bound = 1.0 / math.sqrt(fan_in)
        return keras.layers.Conv3D(
            filters, 1, padding="valid", use_bias=True,
            kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            name=name, dtype=self.dtype_policy)

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[-1] is None:
            raise ValueError("NonLocalBlock expects (B, T, H, W, C) with a known C; "
                             f"received shape {tuple(input_shape)}")
        channels = int(input_shape[-1])
        inter = self.inter_channels or channels
        self._inter = inter
        shape = tuple(input_shape)
        inter_shape = shape[:-1] + (inter,)
        self.g = self._conv(inter, channels, "g")
        self.theta = self._conv(inter, channels, "theta")
        self.phi = self._conv(inter, channels, "phi")
        self.w_z_conv = self._conv(channels, inter, "w_z_conv")
        self.w_z_bn = BatchNormalization(
            epsilon=self.bn_epsilon, momentum=self.bn_momentum, gamma_initializer="zeros",
            beta_initializer="zeros", name="w_z_bn", dtype=self.dtype_policy)
        for conv in (self.g, self.theta, self.phi):
            conv.build(shape)
        self.w_z_conv.build(inter_shape)
        self.w_z_bn.build(shape)

    def call(self, inputs, training=None):
        x = ops.cast(inputs, self.compute_dtype)
        shape = ops.shape(x)
        batch = shape[0]

        def positions(t):  # (B, T, H, W, Ci) -> (B, P, Ci)
            return ops.reshape(t, (batch, -1, self._inter))

        theta = positions(self.theta(x))
        phi = positions(self.phi(x))
        g = positions(self.g(x))
        scores = ops.matmul(theta, ops.transpose(phi, (0, 2, 1)))
        num_positions = ops.cast(ops.shape(scores)[-1], scores.dtype)
        scores = ops.softmax(scores / ops.sqrt(num_positions), axis=-1)
        y = ops.matmul(scores, g)
        y = ops.reshape(y, (batch, shape[1], shape[2], shape[3], self._inter))
        return self.w_z_bn(self.w_z_conv(y), training=training) + x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"inter_channels": self.inter_channels, "bn_epsilon": self.bn_epsilon,
                       "bn_momentum": self.bn_momentum})
        return config
