"""The reference's AdamW (opt/AdamW.py, used by two_stream_bert2.py for every BERT model), exactly: the update
of torch.optim.AdamW.

Per weight ``p`` with gradient ``g`` at optimizer step ``t`` (1, 2, ...):

    p *= 1 - lr * weight_decay                          (decoupled decay, before the Adam step)
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    p -= lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)

It differs from `keras.optimizers.AdamW` in one place: Keras adds epsilon to ``sqrt(v)`` before the bias
correction, which in torch's terms is an epsilon of ``epsilon / sqrt(1 - beta_2^t)`` (3.2e-7 instead of 1e-8 at
the first step). Weights with small gradients (norm offsets, attention weights) then step up to 7 % less than
in the reference during the first thousands of steps.

Exact in the weight's dtype: every constant (betas, epsilon, the decay factor) is made a tensor of the weight's
dtype directly, so a float64 policy gives a float64 update (beta_2 is not rounded to 0.99900001). Only the
learning rate is the float32 variable every Keras optimizer keeps (a relative error of ~3e-8 on the step).

Gradient accumulation: with ``gradient_accumulation_steps=k`` Keras applies the mean of k micro-batch gradients
(the reference divides the loss by ``iter_size`` and sums: the same gradient) and ``self.iterations`` counts
applied updates (``_iterations // k``), so ``t`` above counts optimizer steps, as torch's ``state['step']``.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bert3d")
class ReferenceAdamW(keras.optimizers.Optimizer):
    """torch.optim.AdamW / the reference's opt/AdamW.py (see the module docstring for the update).

    ``weight_decay`` is decoupled (``p *= 1 - lr * weight_decay``), applied to every weight unless excluded with
    ``exclude_from_weight_decay``. The defaults are torch's: betas (0.9, 0.999), epsilon 1e-8,
    weight decay 1e-2 (the reference's recipe passes 1e-3).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.01,
                 name="reference_adamw", **kwargs):
        if not 0 <= beta_1 < 1 or not 0 <= beta_2 < 1:
            raise ValueError(f"`beta_1` and `beta_2` must be in [0, 1); received beta_1={beta_1}, beta_2={beta_2}")
        if epsilon is None or epsilon < 0:
            raise ValueError(f"`epsilon` must be >= 0; received epsilon={epsilon}")
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0; received weight_decay={weight_decay}")
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_optimizer_variables(variables, ["momentum", "velocity"])

    def _apply_weight_decay(self, variables):
        """The decay is part of `update_step` (one expression, as torch applies it), not Keras' separate pass."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype

        def const(value):
            return ops.convert_to_tensor(value, dtype=dtype)

        lr = ops.cast(learning_rate, dtype)
        grad = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        new_m = const(self.beta_1) * m + const(1.0 - self.beta_1) * grad
        new_v = const(self.beta_2) * v + const(1.0 - self.beta_2) * ops.square(grad)
        self.assign(m, new_m)
        self.assign(v, new_v)
        bias_correction1 = const(1.0) - ops.power(const(self.beta_1), step)
        bias_correction2 = const(1.0) - ops.power(const(self.beta_2), step)
        denominator = ops.sqrt(new_v) / ops.sqrt(bias_correction2) + const(self.epsilon)
        value = variable
        if self.weight_decay and self._use_weight_decay(variable):
            value = ops.multiply(variable, const(1.0) - lr * const(self.weight_decay))
        self.assign(variable, value - (lr / bias_correction1) * (new_m / denominator))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config
