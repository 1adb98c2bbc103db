"""The BERT reference's LayerNorm: unbiased standard deviation, epsilon added to the std."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bert3d")
class ReferenceLayerNorm(keras.layers.Layer):
    """``gamma * (x - mean) / (std + epsilon) + beta`` over the last axis.

    ``std`` is the unbiased (N - 1) standard deviation and ``epsilon`` is added to
    it, not to the variance, exactly as the reference's ``utils/layer_norm.py``.
    It differs from ``keras.layers.LayerNormalization`` by a factor close to
    ``sqrt((d - 1) / d)`` and, for rows of tiny variance, by far more.

    Args:
        epsilon: added to the standard deviation (reference: 1e-6).
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(f"`epsilon` must be a non-negative number; received epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or dim < 2:
            raise ValueError(f"ReferenceLayerNorm needs a known last axis >= 2; received shape {input_shape}")
        self.gamma = self.add_weight(shape=(dim,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(dim,), initializer="zeros", name="beta")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        dim = ops.shape(x)[-1]
        mean = ops.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        variance = ops.sum(ops.square(centred), axis=-1, keepdims=True) / ops.cast(dim - 1, x.dtype)
        std = ops.sqrt(variance)
        return self.gamma * centred / (std + self.epsilon) + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config
