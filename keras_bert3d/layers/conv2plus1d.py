"""Conv2Plus1D: a 3x3x3 convolution factorised into a spatial (1x3x3) and a temporal (3x1x1) one."""
import keras
from keras import ops

from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.padding import conv_output_size, symmetric_pad, triple
from keras_bert3d.validation import check_bn_args, check_positive_int

# The reference factorises a k x k x k convolution with k = 3 (models/r2plus1d/resnet.py:42-58).
KERNEL_SIZE = 3


def conv_initializer():
    """The reference's conv init: Kaiming-normal, fan_out, ReLU gain (VideoResNet._initialize_weights)."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _same_is_symmetric(strides):
    """TF 'same' pads ``k // 2`` on both sides of an odd kernel at stride 1: the PyTorch padding.

    Such a conv then needs no padded copy of its input (which the backward pass would also keep:
    the padded tensor, not the unpadded one, is what the filter gradient reads). At stride 2 TF
    pads asymmetrically, so the explicit symmetric pad stays there (block 0 of stages 2-4).
    """
    return all(s == 1 for s in strides)


def _padded_shape(shape, padding):
    """``shape`` (B, T, H, W, C) after ``symmetric_pad(x, padding)`` (None stays None)."""
    dims = [None if n is None else n + 2 * p for n, p in zip(shape[1:4], padding)]
    return (shape[0], *dims, shape[4])


@keras.saving.register_keras_serializable(package="keras_bert3d")
class Conv2Plus1D(keras.layers.Layer):
    """The R(2+1)D factorised convolution of Tran et al. 2018, with PyTorch-exact padding.

    ``spatial_conv`` (1, 3, 3), stride (1, s, s), padding (0, 1, 1), in -> ``mid_filters``
    -> ``spatial_bn`` -> ReLU -> ``temporal_conv`` (3, 1, 1), stride (s, 1, 1), padding
    (1, 0, 0), ``mid_filters`` -> ``filters``. No conv has a bias and there is no BN or
    ReLU after the temporal conv (the enclosing block adds them).

    Args:
        filters: output channels.
        mid_filters: channels between the two convs. The reference derives them from the
            block's widths with :meth:`reference_mid_filters`.
        strides: an int ``s`` (the reference: (1, s, s) spatial, (s, 1, 1) temporal) or a
            (T, H, W) triple; H and W go to the spatial conv, T to the temporal one.
        bn_epsilon, bn_momentum: the mid BatchNorm's settings (Keras momentum convention;
            R(2+1)D uses eps 1e-3 and PyTorch momentum 0.9, i.e. Keras 0.1).

    Input ``(B, T, H, W, C)``; output ``(B, T', H', W', filters)``.
    """

    def __init__(self, filters, mid_filters, strides=1, bn_epsilon=1e-3, bn_momentum=0.1, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_positive_int("mid_filters", mid_filters)
        strides = triple(strides, "strides")
        if any(s < 1 for s in strides):
            raise ValueError(f"`strides` must be positive; received strides={strides!r}")
        check_bn_args(bn_epsilon, bn_momentum)
        self.filters = filters
        self.mid_filters = mid_filters
        self.strides = strides
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum

        k = KERNEL_SIZE
        self.spatial_kernel = (1, k, k)
        self.spatial_strides = (1, strides[1], strides[2])
        self.spatial_padding = (0, k // 2, k // 2)
        self.temporal_kernel = (k, 1, 1)
        self.temporal_strides = (strides[0], 1, 1)
        self.temporal_padding = (k // 2, 0, 0)
        # The pads applied as copies (``symmetric_pad``); none where 'same' is already symmetric.
        self._spatial_pad = (0, 0, 0) if _same_is_symmetric(self.spatial_strides) else self.spatial_padding
        self._temporal_pad = (0, 0, 0) if _same_is_symmetric(self.temporal_strides) else self.temporal_padding

        self.spatial_conv = keras.layers.Conv3D(
            mid_filters, self.spatial_kernel, strides=self.spatial_strides,
            padding="same" if _same_is_symmetric(self.spatial_strides) else "valid",
            use_bias=False, kernel_initializer=conv_initializer(), name="spatial_conv",
            dtype=self.dtype_policy)
        self.spatial_bn = BatchNormalization(
            epsilon=bn_epsilon, momentum=bn_momentum, name="spatial_bn", dtype=self.dtype_policy)
        self.temporal_conv = keras.layers.Conv3D(
            filters, self.temporal_kernel, strides=self.temporal_strides,
            padding="same" if _same_is_symmetric(self.temporal_strides) else "valid",
            use_bias=False, kernel_initializer=conv_initializer(), name="temporal_conv",
            dtype=self.dtype_policy)

    @staticmethod
    def reference_mid_filters(in_channels, filters):
        """The reference's mid width ``floor(in*out*27 / (in*9 + 3*out))``.

        It makes the (2+1)D pair have about as many weights as one 3x3x3 conv in -> out
        (e.g. 64 -> 64: 144; 64 -> 128: 230; 128 -> 128: 288).
        """
        check_positive_int("in_channels", in_channels)
        check_positive_int("filters", filters)
        k = KERNEL_SIZE
        return (in_channels * filters * k * k * k) // (in_channels * k * k + k * filters)

    def _spatial_output_shape(self, input_shape):
        dims = [conv_output_size(input_shape[i + 1], self.spatial_kernel[i], self.spatial_strides[i],
                                 self.spatial_padding[i]) for i in range(3)]
        return (input_shape[0], *dims, self.mid_filters)

    def build(self, input_shape):
        # Each 'valid' conv sees its input after the symmetric padding (Conv3D.build checks the
        # 'valid' output size, so an unpadded T of 2 would be refused for a (3, 1, 1) conv).
        input_shape = tuple(input_shape)
        self.spatial_conv.build(_padded_shape(input_shape, self._spatial_pad))
        mid_shape = self._spatial_output_shape(input_shape)
        self.spatial_bn.build(mid_shape)
        self.temporal_conv.build(_padded_shape(mid_shape, self._temporal_pad))

    def call(self, inputs, training=None):
        x = self.spatial_conv(symmetric_pad(inputs, self._spatial_pad))
        x = ops.relu(self.spatial_bn(x, training=training))
        return self.temporal_conv(symmetric_pad(x, self._temporal_pad))

    def compute_output_shape(self, input_shape):
        mid = self._spatial_output_shape(tuple(input_shape))
        dims = [conv_output_size(mid[i + 1], self.temporal_kernel[i], self.temporal_strides[i],
                                 self.temporal_padding[i]) for i in range(3)]
        return (input_shape[0], *dims, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "mid_filters": self.mid_filters, "strides": list(self.strides),
            "bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum,
        })
        return config
