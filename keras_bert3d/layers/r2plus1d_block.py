"""R2Plus1DBlock: the reference's BasicBlock with Conv2Plus1D convolutions (R(2+1)D-18/34)."""
import keras
from keras import ops

from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.conv2plus1d import KERNEL_SIZE, Conv2Plus1D, conv_initializer
from keras_bert3d.layers.padding import conv_output_size, triple
from keras_bert3d.layers.recompute import block_call
from keras_bert3d.validation import check_bn_args, check_bool, check_positive_int


@keras.saving.register_keras_serializable(package="keras_bert3d")
class R2Plus1DBlock(keras.layers.Layer):
    """The R(2+1)D residual block (torchvision ``BasicBlock`` with ``Conv2Plus1D``).

    ``conv1`` (Conv2Plus1D, ``strides``) -> ``bn1`` -> ReLU -> ``conv2`` (Conv2Plus1D,
    stride 1) -> ``bn2``, plus the shortcut: identity, or, when the stride is not 1 or the
    channel count changes, ``downsample_conv`` (1x1x1, stride (s, s, s), no bias) ->
    ``downsample_bn``; add, then ReLU.

    Args:
        filters: output channels (the reference's ``planes``; expansion 1).
        strides: int ``s`` or a (T, H, W) triple, applied by ``conv1`` and the shortcut.
        mid_filters: mid width of both Conv2Plus1D; ``None`` uses the reference formula
            :meth:`Conv2Plus1D.reference_mid_filters` of (input channels, ``filters``).
        conv2_mid_filters: overrides the mid width of ``conv2`` only (the Caffe2 fix the
            reference applies to block 0 of layers 2-4: 288 / 576 / 1152).
        bn_epsilon, bn_momentum: every BatchNorm's settings (Keras momentum convention).
        remat: in training, keep only the block's input for the backward pass and recompute the
            rest there (:func:`keras_bert3d.layers.recompute.recompute`): less memory, one more
            forward of the block per step; the results are the same.

    Input ``(B, T, H, W, C)``; output ``(B, T', H', W', filters)``.
    """

    def __init__(self, filters, strides=1, mid_filters=None, conv2_mid_filters=None,
                 bn_epsilon=1e-3, bn_momentum=0.1, remat=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_positive_int("mid_filters", mid_filters, optional=True)
        check_positive_int("conv2_mid_filters", conv2_mid_filters, optional=True)
        strides = triple(strides, "strides")
        if any(s < 1 for s in strides):
            raise ValueError(f"`strides` must be positive; received strides={strides!r}")
        check_bn_args(bn_epsilon, bn_momentum)
        self.remat = check_bool("remat", remat)
        self.filters = filters
        self.strides = strides
        self.mid_filters = mid_filters
        self.conv2_mid_filters = conv2_mid_filters
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        # Built in build(): the default mid width depends on the input channels.
        self.conv1 = self.bn1 = self.conv2 = self.bn2 = None
        self.downsample_conv = self.downsample_bn = None

    def _bn(self, name):
        return BatchNormalization(epsilon=self.bn_epsilon, momentum=self.bn_momentum,
                                  name=name, dtype=self.dtype_policy)

    def has_projection(self, in_channels):
        """Whether the shortcut is a projection (the reference's ``downsample``)."""
        return in_channels != self.filters or self.strides != (1, 1, 1)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        in_channels = int(input_shape[-1])
        mid1 = self.mid_filters or Conv2Plus1D.reference_mid_filters(in_channels, self.filters)
        mid2 = self.conv2_mid_filters or mid1
        common = dict(bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum, dtype=self.dtype_policy)
        self.conv1 = Conv2Plus1D(self.filters, mid1, strides=self.strides, name="conv1", **common)
        self.bn1 = self._bn("bn1")
        self.conv2 = Conv2Plus1D(self.filters, mid2, strides=1, name="conv2", **common)
        self.bn2 = self._bn("bn2")

        self.conv1.build(input_shape)
        out_shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(out_shape)
        self.conv2.build(out_shape)
        self.bn2.build(out_shape)
        if self.has_projection(in_channels):
            self.downsample_conv = keras.layers.Conv3D(
                self.filters, 1, strides=self.strides, padding="valid", use_bias=False,
                kernel_initializer=conv_initializer(), name="downsample_conv", dtype=self.dtype_policy)
            self.downsample_bn = self._bn("downsample_bn")
            self.downsample_conv.build(input_shape)
            self.downsample_bn.build(out_shape)

    def call(self, inputs, training=None):
        return block_call(self, self._forward, inputs, training)

    def _forward(self, inputs, training):
        x = ops.relu(self.bn1(self.conv1(inputs, training=training), training=training))
        x = self.bn2(self.conv2(x, training=training), training=training)
        shortcut = inputs
        if self.downsample_conv is not None:
            shortcut = self.downsample_bn(self.downsample_conv(inputs), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        # conv1 sets the output size (kernel 3, padding 1 on every strided axis); conv2
        # and the 1x1x1 shortcut give the same size.
        dims = [conv_output_size(input_shape[i + 1], KERNEL_SIZE, self.strides[i], KERNEL_SIZE // 2)
                for i in range(3)]
        return (input_shape[0], *dims, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "strides": list(self.strides), "mid_filters": self.mid_filters,
            "conv2_mid_filters": self.conv2_mid_filters, "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum, "remat": self.remat,
        })
        return config
