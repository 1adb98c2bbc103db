"""The reference's SGD (two_stream2.py, the baselines): torch.optim.SGD with momentum, dampening and coupled
L2 weight decay, exactly."""
import keras


@keras.saving.register_keras_serializable(package="keras_bert3d")
class ReferenceSGD(keras.optimizers.Optimizer):
    """torch.optim.SGD: ``g' = g + wd * w; buf = g' (first step) else momentum * buf + (1 - dampening) * g';
    w -= lr * buf``. ``weight_decay`` here is torch's coupled L2 term (see the module docstring)."""

    def __init__(self, learning_rate=0.01, momentum=0.9, dampening=0.9, weight_decay=0.0, name="reference_sgd",
                 **kwargs):
        if not 0 <= momentum <= 1 or not 0 <= dampening <= 1:
            raise ValueError(f"`momentum` and `dampening` must be in [0, 1]; received momentum={momentum}, "
                             f"dampening={dampening}")
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0; received weight_decay={weight_decay}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.dampening, self.coupled_weight_decay = momentum, dampening, weight_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum") if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        lr = keras.ops.cast(learning_rate, variable.dtype)
        grad = keras.ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay and self._use_weight_decay(variable):
            grad = grad + self.coupled_weight_decay * variable
        if self.momentum:
            buf = self.momentums[self._get_variable_index(variable)]
            damped = self.momentum * buf + (1.0 - self.dampening) * grad
            grad = keras.ops.where(keras.ops.equal(self.iterations, 0), grad, damped)
            self.assign(buf, grad)
        self.assign_sub(variable, lr * grad)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, dampening=self.dampening, weight_decay=self.coupled_weight_decay)
        return config
