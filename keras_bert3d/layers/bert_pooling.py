"""BERTPooling: the paper's late temporal modeling, a small BERT over the temporal tokens."""
import math

import keras
from keras import ops

from keras_bert3d.layers.reference_layer_norm import ReferenceLayerNorm

NORMS = ("reference", "standard")
INITIALIZERS = ("bert5", "bert2")


@keras.saving.register_keras_serializable(package="keras_bert3d")
class BERTPooling(keras.layers.Layer):
    """Pools a token sequence (B, N, d) into the output of a learned classification token (B, d).

    A learned CLS token is prepended and a learned positional embedding over the
    N + 1 positions is added, then dropout; then ``num_layers`` pre-norm transformer
    blocks (multi-head attention, then a tanh-GELU feed-forward of ``intermediate_dim``),
    with dropout on the attention probabilities, after each sublayer and on the
    block output, and no final norm (REFERENCE.md section 2).

    In training only, each sample's keys/values are dropped with probability
    ``1 - mask_keep_prob`` (the CLS key is always kept): the reference's
    ``mask_prob`` trick. Randomness comes from a ``keras.random.SeedGenerator``.

    Args:
        num_heads: attention heads; must divide d.
        num_layers: transformer blocks.
        intermediate_dim: feed-forward width; ``None`` means ``4 * d``.
        dropout: the rate of every dropout inside the module (reference 0.1).
        mask_keep_prob: keep probability of each non-CLS key in training (reference
            0.8; 1.0 disables masking).
        norm: ``"reference"`` (unbiased std, epsilon added to the std) or
            ``"standard"`` (``keras.layers.LayerNormalization``).
        layer_norm_epsilon: the norm's epsilon (reference 1e-6).
        initializer: ``"bert5"`` (CLS and positions N(0, 0.02); linear layers with the
            PyTorch default U(+-1/sqrt(fan_in))) or ``"bert2"`` (the I3D models' class:
            CLS and positions N(0, d^-0.5); linear kernels N(0, 0.02), zero biases).
        seed: seed of the key-masking and dropout randomness.

    Call arguments:
        inputs: (B, N, d) tokens; N and d must be known.
        training: masking and dropout run only when True.
        return_sequence: also return the full output sequence (B, N + 1, d), CLS first.
        return_attention_scores: also return the last block's attention
            probabilities (B, num_heads, N + 1, N + 1) (row = query, column = key).

    Returns the CLS output (B, d), or a tuple ``(cls, [sequence], [scores])``.
    """

    def __init__(self, num_heads=8, num_layers=1, intermediate_dim=None, dropout=0.1,
                 mask_keep_prob=0.8, norm="reference", layer_norm_epsilon=1e-6,
                 initializer="bert5", seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"`num_heads` must be a positive int; received num_heads={num_heads!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"`num_layers` must be a positive int; received num_layers={num_layers!r}")
        if intermediate_dim is not None and (not isinstance(intermediate_dim, int) or intermediate_dim < 1):
            raise ValueError(f"`intermediate_dim` must be None or a positive int; received {intermediate_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1); received dropout={dropout!r}")
        if not 0.0 < mask_keep_prob <= 1.0:
            raise ValueError(f"`mask_keep_prob` must be in (0, 1]; received mask_keep_prob={mask_keep_prob!r}")
        if norm not in NORMS:
            raise ValueError(f"`norm` must be one of {list(NORMS)}; received norm={norm!r}")
        if initializer not in INITIALIZERS:
            raise ValueError(f"`initializer` must be one of {list(INITIALIZERS)}; received initializer={initializer!r}")
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.intermediate_dim = intermediate_dim
        self.dropout = float(dropout)
        self.mask_keep_prob = float(mask_keep_prob)
        self.norm = norm
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.initializer = initializer
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    # -- construction ------------------------------------------------------------
    def _linear_init(self, fan_in):
        if self.initializer == "bert2":
            return keras.initializers.RandomNormal(stddev=0.02), "zeros"
        bound = 1.0 / math.sqrt(fan_in)
        return (keras.initializers.RandomUniform(-bound, bound),
                keras.initializers.RandomUniform(-bound, bound))

    def _make_norm(self, name):
        if self.norm == "reference":
            return ReferenceLayerNorm(self.layer_norm_epsilon, name=name, dtype=self.dtype_policy)
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name=name,
                                               dtype=self.dtype_policy)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError("BERTPooling expects tokens (batch, num_tokens, dim) with known num_tokens "
                             f"and dim; received shape {tuple(input_shape)}")
        num_tokens, dim = int(input_shape[1]), int(input_shape[2])
        if dim % self.num_heads:
            raise ValueError(f"The token dim ({dim}) must be divisible by num_heads ({self.num_heads})")
        self.token_dim = dim
        self.num_tokens = num_tokens
        ffn_dim = self.intermediate_dim or 4 * dim
        std = 0.02 if self.initializer == "bert5" else dim ** -0.5
        self.cls_token = self.add_weight(shape=(1, 1, dim), name="cls_token",
                                         initializer=keras.initializers.RandomNormal(stddev=std))
        self.position_embedding = self.add_weight(shape=(1, num_tokens + 1, dim), name="position_embedding",
                                                  initializer=keras.initializers.RandomNormal(stddev=std))
        seq_shape = (input_shape[0], num_tokens + 1, dim)
        self.attention_norms, self.attentions, self.ffn_norms = [], [], []
        self.ffn_intermediates, self.ffn_outputs = [], []
        for i in range(self.num_layers):
            kernel, bias = self._linear_init(dim)
            norm_a = self._make_norm(f"block{i}_attention_norm")
            attention = keras.layers.MultiHeadAttention(
                self.num_heads, key_dim=dim // self.num_heads, dropout=self.dropout,
                kernel_initializer=kernel, bias_initializer=bias, name=f"block{i}_attention",
                dtype=self.dtype_policy)
            norm_f = self._make_norm(f"block{i}_ffn_norm")
            ffn_in = keras.layers.Dense(ffn_dim, kernel_initializer=kernel, bias_initializer=bias,
                                        name=f"block{i}_ffn_intermediate", dtype=self.dtype_policy)
            kernel_out, bias_out = self._linear_init(ffn_dim)
            ffn_out = keras.layers.Dense(dim, kernel_initializer=kernel_out, bias_initializer=bias_out,
                                         name=f"block{i}_ffn_output", dtype=self.dtype_policy)
            norm_a.build(seq_shape)
            attention.build(seq_shape, seq_shape)
            norm_f.build(seq_shape)
            ffn_in.build(seq_shape)
            ffn_out.build(seq_shape[:-1] + (ffn_dim,))
            self.attention_norms.append(norm_a)
            self.attentions.append(attention)
            self.ffn_norms.append(norm_f)
            self.ffn_intermediates.append(ffn_in)
            self.ffn_outputs.append(ffn_out)

    # -- forward -----------------------------------------------------------------
    def _dropout(self, x, training):
        if training and self.dropout > 0:
            return keras.random.dropout(x, self.dropout, seed=self.seed_generator)
        return x

    def _key_mask(self, batch, training):
        """(B, N+1, N+1) bool mask: mask[b, i, j] = keep[b, j], CLS key always kept."""
        if not training or self.mask_keep_prob >= 1.0:
            return None
        draw = keras.random.uniform((batch, self.num_tokens), seed=self.seed_generator)
        keep = ops.concatenate([ops.ones((batch, 1), dtype="bool"), draw < self.mask_keep_prob], axis=1)
        return ops.repeat(ops.expand_dims(keep, 1), self.num_tokens + 1, axis=1)

    def call(self, inputs, training=None, return_sequence=False, return_attention_scores=False):
        x = ops.cast(inputs, self.compute_dtype)
        batch = ops.shape(x)[0]
        cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (batch, 1, self.token_dim))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.position_embedding, x.dtype)
        x = self._dropout(x, training)
        mask = self._key_mask(batch, training)
        scores = None
        for i in range(self.num_layers):
            h = self.attention_norms[i](x)
            h, scores = self.attentions[i](h, h, h, attention_mask=mask, training=training,
                                           return_attention_scores=True)
            x = x + self._dropout(h, training)
            h = self.ffn_intermediates[i](self.ffn_norms[i](x))
            h = self._dropout(ops.gelu(h, approximate=True), training)
            x = x + self._dropout(self.ffn_outputs[i](h), training)
            x = self._dropout(x, training)
        outputs = (x[:, 0, :],)
        if return_sequence:
            outputs += (x,)
        if return_attention_scores:
            outputs += (scores,)
        return outputs[0] if len(outputs) == 1 else outputs

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads, "num_layers": self.num_layers,
            "intermediate_dim": self.intermediate_dim, "dropout": self.dropout,
            "mask_keep_prob": self.mask_keep_prob, "norm": self.norm,
            "layer_norm_epsilon": self.layer_norm_epsilon, "initializer": self.initializer,
            "seed": self.seed,
        })
        return config
