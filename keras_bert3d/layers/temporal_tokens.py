"""TemporalTokens: a feature map (B, T, H, W, C) -> a sequence of temporal tokens (B, N, C)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bert3d")
class TemporalTokens(keras.layers.Layer):
    """Averages each time step over H and W; token t is temporal position t.

    This is the reference's ``AvgPool3d((1, k, k))`` / ``AdaptiveAvgPool3d((T', 1, 1))``
    followed by the reshape to (B, T', C).

    Args:
        num_tokens: ``None`` keeps one token per time step. An int pools time
            adaptively to that many tokens, PyTorch ``AdaptiveAvgPool`` style (token i
            averages steps ``floor(i T / n)`` to ``ceil((i + 1) T / n)``): the SlowFast
            early-fusion fast pathway averages 4 consecutive steps (32 -> 8).
        l2_normalize: divide each token by its L2 norm (the I3D models do this
            before BERT).
    """

    def __init__(self, num_tokens=None, l2_normalize=False, **kwargs):
        super().__init__(**kwargs)
        if num_tokens is not None and (not isinstance(num_tokens, int) or num_tokens < 1):
            raise ValueError(f"`num_tokens` must be None or a positive int; received num_tokens={num_tokens!r}")
        if not isinstance(l2_normalize, bool):
            raise ValueError(f"`l2_normalize` must be a bool; received l2_normalize={l2_normalize!r}")
        self.num_tokens = num_tokens
        self.l2_normalize = l2_normalize

    def call(self, inputs):
        x = ops.mean(inputs, axis=(2, 3))  # (B, T, C)
        if self.num_tokens is not None:
            steps = x.shape[1]
            if steps is None:
                raise ValueError("TemporalTokens(num_tokens=...) needs a known number of time steps")
            if steps != self.num_tokens:
                windows = [((i * steps) // self.num_tokens, -(-((i + 1) * steps) // self.num_tokens))
                           for i in range(self.num_tokens)]
                x = ops.stack([ops.mean(x[:, a:b], axis=1) for a, b in windows], axis=1)
        if self.l2_normalize:
            norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
            x = x / ops.maximum(norm, 1e-12)
        return x

    def compute_output_shape(self, input_shape):
        steps = input_shape[1] if self.num_tokens is None else self.num_tokens
        return (input_shape[0], steps, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_tokens": self.num_tokens, "l2_normalize": self.l2_normalize})
        return config
