"""Bottleneck3D: the 1x1x1 -> kxkxk -> 1x1x1 residual block of ResNeXt-3D, SlowFast and the FR blocks."""
import keras
from keras import ops

import keras_bert3d.backend as backend
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.padding import conv_output_size, same_padding, symmetric_pad, triple
from keras_bert3d.layers.recompute import block_call
from keras_bert3d.validation import check_bn_args, check_bool, check_positive_int


@keras.saving.register_keras_serializable(package="keras_bert3d")
class Bottleneck3D(keras.layers.Layer):
    """A 3D bottleneck residual block with PyTorch-exact padding.

    ``conv_a`` (``kernel_a``, stride 1) -> BN -> ReLU -> ``conv_b`` (``kernel_b``,
    ``strides``, ``groups``) -> BN -> ReLU -> ``conv_c`` (1x1x1) -> BN, plus a
    shortcut (identity, or 1x1x1 conv with ``strides`` + BN), then ReLU. Every conv
    pads ``k // 2`` on both sides and has no bias.

    One class covers every use in the reference:
    - ResNeXt-101 block: ``kernel_b=3``, ``strides=s``, ``groups=32``.
    - SlowFast res block: ``kernel_a=(kt, 1, 1)``, ``kernel_b=(1, 3, 3)``, ``strides=(1, s, s)``.
    - The FRMB/FRAB feature-reduction block (ResNeXt 2048 -> 512 with ``groups=32``;
      SlowFast 2048 -> 512 and 256 -> 128 with ``groups=1``): ``kernel_b=3``, stride 1.

    Args:
        filters: output channels.
        mid_filters: channels of ``conv_a`` / ``conv_b``.
        strides: stride of ``conv_b`` and of the shortcut conv (int or (T, H, W)).
        groups: groups of ``conv_b``.
        kernel_a: kernel of ``conv_a``; kernel_b: kernel of ``conv_b``.
        projection: ``None`` (a projection when the shape changes), True or False.
        bn_epsilon, bn_momentum: BatchNorm settings (Keras momentum convention).
        zero_init_last_bn: initialise the last BN's gamma to 0 (SlowFast).
        remat: in training, keep only the block's input for the backward pass and recompute the
            rest there (:func:`keras_bert3d.layers.recompute.recompute`): less memory, one more
            forward of the block per step; the results are the same.
    """

    def __init__(self, filters, mid_filters, strides=1, groups=1, kernel_a=1, kernel_b=3,
                 projection=None, bn_epsilon=1e-5, bn_momentum=0.9, zero_init_last_bn=False,
                 remat=False, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("filters", filters), ("mid_filters", mid_filters), ("groups", groups)):
            check_positive_int(arg, value)
        check_bn_args(bn_epsilon, bn_momentum)
        if mid_filters % groups:
            raise ValueError(f"`mid_filters` ({mid_filters}) must be divisible by `groups` ({groups})")
        if projection not in (None, True, False):
            raise ValueError(f"`projection` must be None, True or False; received projection={projection!r}")
        self.filters = filters
        self.mid_filters = mid_filters
        self.strides = triple(strides, "strides")
        self.groups = groups
        self.kernel_a = triple(kernel_a, "kernel_a")
        self.kernel_b = triple(kernel_b, "kernel_b")
        self.projection = projection
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.zero_init_last_bn = zero_init_last_bn
        self.remat = check_bool("remat", remat)

        def conv(f, k, s=1, g=1, name=None):
            return keras.layers.Conv3D(f, k, strides=s, groups=g, padding="valid", use_bias=False,
                                       kernel_initializer="he_normal", name=name, dtype=self.dtype_policy)

        def bn(name, gamma="ones"):
            return BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                                      gamma_initializer=gamma, name=name,
                                      dtype=self.dtype_policy)

        self.conv_a = conv(mid_filters, self.kernel_a, name="conv_a")
        self.bn_a = bn("bn_a")
        self.conv_b = conv(mid_filters, self.kernel_b, self.strides, groups, name="conv_b")
        self.bn_b = bn("bn_b")
        self.conv_c = conv(filters, 1, name="conv_c")
        self.bn_c = bn("bn_c", "zeros" if zero_init_last_bn else "ones")
        self.shortcut_conv = None
        self.shortcut_bn = None

    def _has_projection(self, in_channels):
        if self.projection is not None:
            return self.projection
        return in_channels != self.filters or self.strides != (1, 1, 1)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])

        def padded(shape, kernel):  # convs are built on the shape they see after padding
            return tuple(shape[:1]) + tuple(None if d is None else d + 2 * (k // 2)
                                            for d, k in zip(shape[1:4], kernel)) + tuple(shape[4:])

        shape = tuple(input_shape)
        self.conv_a.build(padded(shape, self.kernel_a))
        shape_a = shape[:-1] + (self.mid_filters,)
        self.bn_a.build(shape_a)
        self.conv_b.build(padded(shape_a, self.kernel_b))
        shape_b = tuple(self.compute_output_shape(input_shape)[:-1]) + (self.mid_filters,)
        self.bn_b.build(shape_b)
        self.conv_c.build(shape_b)
        self.bn_c.build(shape_b[:-1] + (self.filters,))
        if self._has_projection(in_channels):
            self.shortcut_conv = keras.layers.Conv3D(
                self.filters, 1, strides=self.strides, padding="valid", use_bias=False,
                kernel_initializer="he_normal", name="shortcut_conv", dtype=self.dtype_policy)
            self.shortcut_bn = BatchNormalization(
                epsilon=self.bn_epsilon, momentum=self.bn_momentum, name="shortcut_bn",
                dtype=self.dtype_policy)
            self.shortcut_conv.build(shape)
            self.shortcut_bn.build(shape_b[:-1] + (self.filters,))
        elif in_channels != self.filters:
            raise ValueError(f"projection=False needs in_channels == filters; got {in_channels} vs {self.filters}")

    @property
    def per_group_convolution(self):
        """True when ``conv_b`` runs as one convolution per group now (`keras_bert3d.backend` decides:
        TensorFlow on CPU-only machines, and every export)."""
        return self.groups > 1 and backend.split_grouped_convolutions()

    def _grouped_conv_b(self, x):
        """``conv_b``, or its groups one by one on ``conv_b``'s weights (checkpoints do not change).

        Keras' TensorFlow backend sends grouped convolutions through an XLA-compiled function on the
        CPU, about 30x slower than convolving each group's channels on its own (bench/bench_models.py).
        """
        if not self.per_group_convolution:
            return self.conv_b(x)
        return backend.per_group_conv(x, self.conv_b.kernel, self.groups, self.strides)

    def call(self, inputs, training=None):
        return block_call(self, self._forward, inputs, training)

    def _forward(self, inputs, training):
        x = self.conv_a(symmetric_pad(inputs, same_padding(self.kernel_a)))
        x = ops.relu(self.bn_a(x, training=training))
        x = self._grouped_conv_b(symmetric_pad(x, same_padding(self.kernel_b)))
        x = ops.relu(self.bn_b(x, training=training))
        x = self.bn_c(self.conv_c(x), training=training)
        shortcut = inputs
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        dims = [conv_output_size(input_shape[i + 1], self.kernel_b[i], self.strides[i],
                                 self.kernel_b[i] // 2) for i in range(3)]
        return (input_shape[0], *dims, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "mid_filters": self.mid_filters, "strides": list(self.strides),
            "groups": self.groups, "kernel_a": list(self.kernel_a), "kernel_b": list(self.kernel_b),
            "projection": self.projection, "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum, "zero_init_last_bn": self.zero_init_last_bn,
            "remat": self.remat,
        })
        return config
