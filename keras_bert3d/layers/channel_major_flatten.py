"""ChannelMajorFlatten: tokens (B, N, C) -> (B, C * N) in the reference's (channel, time) order."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bert3d")
class ChannelMajorFlatten(keras.layers.Layer):
    """Flattens a token sequence with index ``c * N + t``, as the reference's
    ``x.view(B, C * N)`` of a (B, C, N, 1, 1) map does (the concatenation heads).
    A (t, c) order would silently scramble converted weights."""

    def call(self, inputs):
        if inputs.shape[1] is None or inputs.shape[2] is None:
            raise ValueError(f"ChannelMajorFlatten needs known (N, C); received shape {inputs.shape}")
        x = ops.transpose(inputs, (0, 2, 1))
        return ops.reshape(x, (-1, inputs.shape[1] * inputs.shape[2]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] * input_shape[2])
