"""LSTMPooling: the LSTM ablation head's temporal pooling (a stacked LSTM, last step of the top layer)."""
import math

import keras
from keras import ops
from keras_bert3d.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_bert3d")
class LSTMPooling(keras.layers.Layer):
    """A stacked unidirectional LSTM over the tokens; returns the top layer's last hidden state.

    ``(B, N, d) -> (B, hidden_dim)``, with PyTorch ``nn.LSTM`` semantics and parameters:
    every layer ``k`` holds ``kernel_l{k}`` ``(in, 4h)``, ``recurrent_kernel_l{k}``
    ``(h, 4h)`` and two biases ``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``(4h,)``, gate blocks
    in the order i, f, g, o; the state starts at zero. Gates:
    ``z = x_t W + b_ih + h_{t-1} U + b_hh``; ``i, f, o = sigmoid``, ``g = tanh``;
    ``c_t = f c_{t-1} + i g``; ``h_t = o tanh(c_t)``. All weights start from PyTorch's
    default ``U(-1/sqrt(h), 1/sqrt(h))``. The two biases keep the parameter count and the
    state-dict layout of the reference (2 layers, 512 -> 450: 3,358,800 parameters); only
    their sum enters the arithmetic.

    The number of tokens ``N`` must be static: the time loop is unrolled (N is 4-8 here).
    The reference (``rgb_resneXt3D64f101_FRMB_lstm``) uses no dropout between layers.

    Args:
        hidden_dim: LSTM hidden size ``h`` (reference: 450).
        num_layers: number of stacked LSTM layers (reference: 2).
    """

    def __init__(self, hidden_dim=450, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.kernels = []
        self.recurrent_kernels = []
        self.input_biases = []
        self.recurrent_biases = []

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"LSTMPooling expects tokens (B, N, d); received shape {tuple(input_shape)}")
        num_tokens, dim = input_shape[1], input_shape[2]
        if num_tokens is None or dim is None or num_tokens < 1:
            raise ValueError("LSTMPooling needs a static number of tokens N >= 1 and feature size d; "
                             f"received shape {tuple(input_shape)}")
        h = self.hidden_dim
        bound = 1.0 / math.sqrt(h)
        init = keras.initializers.RandomUniform(-bound, bound)
        in_dim = int(dim)
        for k in range(self.num_layers):
            self.kernels.append(self.add_weight(
                shape=(in_dim, 4 * h), initializer=init, name=f"kernel_l{k}"))
            self.recurrent_kernels.append(self.add_weight(
                shape=(h, 4 * h), initializer=init, name=f"recurrent_kernel_l{k}"))
            self.input_biases.append(self.add_weight(
                shape=(4 * h,), initializer=init, name=f"bias_ih_l{k}"))
            self.recurrent_biases.append(self.add_weight(
                shape=(4 * h,), initializer=init, name=f"bias_hh_l{k}"))
            in_dim = h

    def _run_layer(self, inputs, k, num_tokens):
        """One LSTM layer over ``inputs`` (B, N, in); returns the list of N hidden states."""
        # The input projection of every step at once; the recurrence is unrolled.
        projected = ops.matmul(inputs, self.kernels[k]) + (self.input_biases[k] + self.recurrent_biases[k])
        batch = ops.shape(inputs)[0]
        h = ops.zeros((batch, self.hidden_dim), dtype=projected.dtype)
        c = ops.zeros((batch, self.hidden_dim), dtype=projected.dtype)
        states = []
        for t in range(num_tokens):
            z = projected[:, t, :] + ops.matmul(h, self.recurrent_kernels[k])
            i, f, g, o = ops.split(z, 4, axis=-1)
            c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
            h = ops.sigmoid(o) * ops.tanh(c)
            states.append(h)
        return states

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        num_tokens = x.shape[1]
        for k in range(self.num_layers):
            states = self._run_layer(x, k, num_tokens)
            if k + 1 < self.num_layers:
                x = ops.stack(states, axis=1)
        return states[-1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "num_layers": self.num_layers})
        return config
