"""InceptionModule: the four-branch Inception-v1 block of I3D (also the I3D FRMB/FRAB block)."""
import keras
from keras import ops

from keras_bert3d.layers.max_pooling3d import MaxPooling3D
from keras_bert3d.layers.recompute import block_call
from keras_bert3d.layers.unit3d import Unit3D
from keras_bert3d.validation import check_bn_args, check_bool, check_positive_ints

# Sublayer names in branch_filters order; they match the reference keys `<prefix>.b0.conv3d.weight` ...
# (`b3a`, the branch-3 max-pool, has no weights).
BRANCH_NAMES = ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")
BRANCH_KERNELS = (1, 1, 3, 1, 3, 1)
POOL_SIZE = 3


@keras.saving.register_keras_serializable(package="keras_bert3d")
class InceptionModule(keras.layers.Layer):
    """The I3D Inception module (piergiaj/pytorch-i3d ``InceptionModule``).

    Four branches on the same input, concatenated on channels in the order b0, b1, b2, b3:
    - b0: 1x1x1 Unit3D (``branch_filters[0]``)
    - b1: 1x1x1 Unit3D (``[1]``) then 3x3x3 Unit3D (``[2]``)
    - b2: 1x1x1 Unit3D (``[3]``) then 3x3x3 Unit3D (``[4]``)
    - b3: 3x3x3 max-pool, stride 1, 'same' padding, then 1x1x1 Unit3D (``[5]``)

    Every Unit3D is conv (no bias) -> BN -> ReLU with TF-'SAME' padding. The reference
    pads the max-pool with zeros; Keras 'same' ignores the padded cells, which is the
    same thing on the non-negative (post-ReLU) inputs the module always receives.
    Output channels: ``b0 + b1b + b2b + b3b``.

    The feature-reduction block of the I3D BERT models (REFERENCE.md 1.3) is this module
    with ``branch_filters=[192, 96, 192, 24, 64, 64]`` (512 channels out).

    Args:
        branch_filters: the six widths ``[b0, b1a, b1b, b2a, b2b, b3b]``.
        bn_epsilon, bn_momentum: BatchNorm settings of every unit (Keras momentum convention).
        remat: in training, keep only the module's input for the backward pass and recompute the
            branches there (:func:`keras_bert3d.layers.recompute.recompute`): less memory, one more
            forward of the module per step; the results are the same.

    Input ``(B, T, H, W, C)``; output ``(B, T, H, W, sum of the four branch outputs)``.
    """

    def __init__(self, branch_filters, bn_epsilon=1e-3, bn_momentum=0.99, remat=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(branch_filters, (list, tuple)) or len(branch_filters) != len(BRANCH_NAMES):
            raise ValueError("`branch_filters` must be 6 ints [b0, b1a, b1b, b2a, b2b, b3b]; "
                             f"received branch_filters={branch_filters!r}")
        check_positive_ints("branch_filters", list(branch_filters))
        check_bn_args(bn_epsilon, bn_momentum)
        self.branch_filters = [int(f) for f in branch_filters]
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.remat = check_bool("remat", remat)

        for name, filters, kernel in zip(BRANCH_NAMES, self.branch_filters, BRANCH_KERNELS):
            unit = Unit3D(filters, kernel, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, name=name,
                          dtype=self.dtype_policy)
            setattr(self, name, unit)
        self.b3a = MaxPooling3D(POOL_SIZE, strides=1, padding="same",
                                             data_format="channels_last", name="b3a",
                                             dtype=self.dtype_policy)

    @property
    def output_channels(self):
        b0, _, b1b, _, b2b, b3b = self.branch_filters
        return b0 + b1b + b2b + b3b

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.b0.build(input_shape)
        self.b1a.build(input_shape)
        self.b1b.build(input_shape[:-1] + (self.branch_filters[1],))
        self.b2a.build(input_shape)
        self.b2b.build(input_shape[:-1] + (self.branch_filters[3],))
        self.b3a.build(input_shape)
        self.b3b.build(input_shape)

    def call(self, inputs, training=None):
        return block_call(self, self._forward, inputs, training)

    def _forward(self, inputs, training):
        b0 = self.b0(inputs, training=training)
        b1 = self.b1b(self.b1a(inputs, training=training), training=training)
        b2 = self.b2b(self.b2a(inputs, training=training), training=training)
        b3 = self.b3b(self.b3a(inputs), training=training)
        return ops.concatenate([b0, b1, b2, b3], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_channels,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "branch_filters": list(self.branch_filters),
            "bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum, "remat": self.remat,
        })
        return config
