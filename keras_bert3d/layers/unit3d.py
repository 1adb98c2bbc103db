"""Unit3D: the I3D conv unit, a bias-free 3D convolution with TF 'SAME' padding, BatchNorm and ReLU."""
import keras
from keras import ops
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.validation import check_bn_args, check_positive_ints


def same_output_size(size, stride):
    """Output length of a TF-'SAME' conv/pool: ``ceil(size / stride)`` (None stays None)."""
    if size is None:
        return None
    return -(-int(size) // int(stride))


def pytorch_default_conv_initializer():
    """PyTorch's default Conv3d init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); I3D keeps it."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def positive_triple(name, value):
    """An int or 3 positive ints -> a (T, H, W) tuple; anything else raises a ValueError."""
    values = [value] * 3 if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ValueError(f"`{name}` must be an int or 3 ints (T, H, W); received {name}={value!r}")
    check_positive_ints(name, list(values))
    return tuple(values)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class Unit3D(keras.layers.Layer):
    """The I3D convolution unit (piergiaj/pytorch-i3d ``Unit3D``, as used by the reference).

    ``conv3d`` (no bias) -> ``bn`` -> ReLU. The reference pads every call with zeros by
    the TF 'SAME' rule (total ``max(k - s, 0)`` or ``max(k - n % s, 0)``, the smaller half
    in front), which is exactly Keras ``padding="same"``; so, unlike the other families,
    I3D needs no explicit symmetric padding. Output length per axis: ``ceil(n / s)``.

    The sublayer names ``conv3d`` and ``bn`` match the reference keys
    ``<prefix>.conv3d.weight`` and ``<prefix>.bn.*``.

    Args:
        filters: output channels.
        kernel_size: int or (T, H, W).
        strides: int or (T, H, W).
        bn_epsilon: BatchNorm epsilon (reference 1e-3).
        bn_momentum: BatchNorm momentum, Keras convention (reference PyTorch 0.01 -> 0.99).

    Input ``(B, T, H, W, C)``; output ``(B, T', H', W', filters)``.
    """

    def __init__(self, filters, kernel_size=1, strides=1, bn_epsilon=1e-3, bn_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints("filters", [filters])
        kernel_size = positive_triple("kernel_size", kernel_size)
        strides = positive_triple("strides", strides)
        check_bn_args(bn_epsilon, bn_momentum)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum

        self.conv3d = keras.layers.Conv3D(
            filters, kernel_size, strides=strides, padding="same", data_format="channels_last",
            use_bias=False, kernel_initializer=pytorch_default_conv_initializer(), name="conv3d",
            dtype=self.dtype_policy)
        self.bn = BatchNormalization(
            axis=-1, epsilon=bn_epsilon, momentum=bn_momentum, name="bn", dtype=self.dtype_policy)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.conv3d.build(input_shape)
        self.bn.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return ops.relu(self.bn(self.conv3d(inputs), training=training))

    def compute_output_shape(self, input_shape):
        dims = [same_output_size(input_shape[i + 1], self.strides[i]) for i in range(3)]
        return (input_shape[0], *dims, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": list(self.kernel_size), "strides": list(self.strides),
            "bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum,
        })
        return config
