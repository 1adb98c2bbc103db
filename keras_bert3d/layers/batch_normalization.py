"""BatchNormalization with PyTorch's running-variance rule (the reference trains with PyTorch)."""
import keras
from keras import ops

from keras_bert3d.validation import check_choice

MOVING_VARIANCE_RULES = ("unbiased", "biased")


@keras.saving.register_keras_serializable(package="keras_bert3d")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose moving variance can follow PyTorch's rule.

    In training both rules normalise the batch with its biased variance (the mean of the squared
    deviations); they differ only in what the moving average takes in:

    - ``"unbiased"`` (default; PyTorch's ``BatchNorm3d``, which the reference and every preset
      were trained with): ``moving_variance = momentum * moving_variance + (1 - momentum) *
      variance * n / (n - 1)``, with ``n`` the number of values reduced per channel
      (``batch * T * H * W`` for a video tensor, the mask's count when a mask is given;
      ``n = 1`` leaves the variance as it is, where PyTorch refuses the batch);
    - ``"biased"``: Keras' own rule, the biased variance.

    Inference, the frozen layer (``trainable=False``) and everything else are Keras' own
    (``super().call``), so outputs in inference mode do not depend on the rule. The statistics
    are computed in float32 under mixed precision and in float64 under a float64 policy, as
    Keras computes them.

    The class keeps Keras' name on purpose: ``.keras`` files address the weights of a functional
    model's layers by the snake-cased class name and position (``layers/batch_normalization_3``),
    so files saved with ``keras.layers.BatchNormalization`` load into models built with this one.

    Args:
        moving_variance_rule: ``"unbiased"`` (PyTorch) or ``"biased"`` (Keras).
        **kwargs: the arguments of ``keras.layers.BatchNormalization`` (``renorm`` and
            ``synchronized`` need ``moving_variance_rule="biased"``).
    """

    def __init__(self, moving_variance_rule="unbiased", **kwargs):
        check_choice("moving_variance_rule", moving_variance_rule, MOVING_VARIANCE_RULES)
        for option in ("renorm", "synchronized"):
            if kwargs.get(option) and moving_variance_rule != "biased":
                raise ValueError(f"`{option}=True` takes Keras' own statistics: pass moving_variance_rule='biased'; "
                                 f"received moving_variance_rule={moving_variance_rule!r}")
        super().__init__(**kwargs)
        self.moving_variance_rule = moving_variance_rule

    def call(self, inputs, training=None, mask=None):
        float64 = keras.backend.standardize_dtype(inputs.dtype) == "float64"
        if not (training and self.trainable) and float64 and mask is None:
            # Keras' inference branch, kept in float64 (Keras casts to result_type(x, "float32"), which is
            # float32 off TensorFlow); float32 and mixed inputs take Keras' own code below.
            return self._normalize(inputs, self.moving_mean, self.moving_variance)
        if self.moving_variance_rule == "biased" or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
            return super().call(inputs, training=training, mask=mask)  # Keras raises its own error
        # Keras' training branch, with the moving variance fed the unbiased batch variance.
        inputs = ops.cast(inputs, "float64" if float64 else keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(inputs, mask)
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, inputs.dtype) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(ops.cast(self.moving_variance, inputs.dtype) * momentum
                                    + variance * self._bessel_factor(inputs, mask) * (1.0 - momentum))
        return self._normalize(inputs, mean, variance)

    def _normalize(self, inputs, mean, variance):
        outputs = ops.batch_normalization(
            x=inputs, mean=ops.cast(mean, inputs.dtype), variance=ops.cast(variance, inputs.dtype), axis=self.axis,
            offset=None if not self.center else ops.cast(self.beta, inputs.dtype),
            scale=None if not self.scale else ops.cast(self.gamma, inputs.dtype),
            epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _bessel_factor(self, inputs, mask):
        """``n / (n - 1)`` (1 when ``n = 1``): a Python float for static shapes, else a tensor."""
        if mask is not None:
            count = ops.sum(ops.cast(mask, inputs.dtype))
        else:
            sizes = [inputs.shape[axis] for axis in self._reduction_axes]
            if all(size is not None for size in sizes):
                count = 1
                for size in sizes:
                    count *= int(size)
                return count / (count - 1) if count > 1 else 1.0
            count = 1
            for axis, size in zip(self._reduction_axes, sizes):
                count = count * (ops.shape(inputs)[axis] if size is None else int(size))
            count = ops.cast(count, inputs.dtype)
        return count / ops.maximum(count - 1.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "moving_variance_rule": self.moving_variance_rule}
