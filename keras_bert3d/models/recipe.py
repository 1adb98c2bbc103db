"""The reference training recipe (REFERENCE.md 5.2-5.5) in Keras terms: optimisers, loss and metrics.

Optimisers:
- ``adamw`` (two_stream_bert2.py, BERT models): `keras.optimizers.AdamW`, betas (0.9, 0.999), lr 1e-5,
  decoupled weight decay 1e-3 applied before the Adam step to every weight (as torch.optim.AdamW).
  Keras puts epsilon outside the bias correction ("epsilon hat", eps / sqrt(1 - beta2^t) in torch
  terms); with eps 1e-8 this matters only for weights whose sqrt(v_hat) is below ~1e-6.
- ``sgd`` (two_stream2.py, baselines): `ReferenceSGD`, an exact port of torch.optim.SGD with momentum
  0.9, **dampening 0.9** and coupled L2 weight decay 1e-3 (``g += wd * w`` before the momentum buffer;
  the first step uses the raw gradient). `keras.optimizers.SGD` has no dampening: its closest match
  would be ``SGD(lr * (1 - dampening), momentum)`` (same steady-state step, since (1 - 0.9) / (1 - 0.9)
  = 1) with a decoupled decay of ``wd / (1 - dampening)``, but the first ~50 steps differ.
- Both accumulate gradients over ``gradient_accumulation_steps`` batches (Keras averages them, as the
  reference divides the loss by ``iter_size``); `EpochAccumulationReset` (keras_bert3d.training.callbacks) drops a
  partial accumulation at each epoch start, as the reference zeroes its gradients there.
- ``decay_norms_and_biases=False`` excludes norms, biases, the CLS token and positions
  (`no_decay_variables`) through ``exclude_from_weight_decay``.

Loss: cross-entropy on logits (categorical when mixup/cutmix give one-hot labels). Metrics: top-1, top-5.
The callbacks of a run (plateau schedule, best checkpoint, history, backup) are in keras_bert3d.training.callbacks.
"""
import keras

from keras_bert3d.optimizers.reference_sgd import ReferenceSGD

RECIPES = {"adamw": {"learning_rate": 1e-5}, "sgd": {"learning_rate": 1e-2}}
NO_DECAY_NAMES = ("cls_token", "position_embedding")


def no_decay_variables(model):
    """Norm scales/offsets, biases (every weight of rank <= 1, and ``bias*``), the CLS token, positions."""
    return [v for v in model.trainable_weights
            if len(v.shape) <= 1 or v.name.startswith("bias") or v.name in NO_DECAY_NAMES]


def make_optimizer(name, model, learning_rate=None, weight_decay=1e-3, decay_norms_and_biases=True,
                   gradient_accumulation_steps=16, momentum=0.9, dampening=0.9):
    """The reference optimiser ``"adamw"`` or ``"sgd"``; ``learning_rate=None`` takes the recipe's."""
    if name not in RECIPES:
        raise ValueError(f"`optimizer` must be one of {sorted(RECIPES)}; received optimizer={name!r}")
    lr = float(RECIPES[name]["learning_rate"] if learning_rate is None else learning_rate)
    accumulation = int(gradient_accumulation_steps) if gradient_accumulation_steps > 1 else None
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=float(weight_decay), beta_1=0.9,
                                           beta_2=0.999, epsilon=1e-8, gradient_accumulation_steps=accumulation)
    else:
        optimizer = ReferenceSGD(learning_rate=lr, momentum=momentum, dampening=dampening,
                                 weight_decay=float(weight_decay), gradient_accumulation_steps=accumulation)
    if not decay_norms_and_biases:
        optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer


def make_loss(one_hot=False):
    """Cross-entropy on logits; ``one_hot`` for mixup/cutmix labels."""
    if one_hot:
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class SparseTopK(keras.metrics.SparseTopKCategoricalAccuracy):
    """Top-k accuracy that accepts float16/bfloat16 logits (mixed precision: Keras' in_top_k wants float32)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, keras.ops.cast(y_pred, "float32"), sample_weight)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class TopK(keras.metrics.TopKCategoricalAccuracy):
    """`SparseTopK` for one-hot (mixup/cutmix) labels."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, keras.ops.cast(y_pred, "float32"), sample_weight)


def make_metrics(num_classes, one_hot=False):
    """``top1`` and ``top5`` (top-k with k = min(5, num_classes))."""
    k = min(5, num_classes)
    if one_hot:
        return [keras.metrics.CategoricalAccuracy(name="top1"), TopK(k, name="top5")]
    return [keras.metrics.SparseCategoricalAccuracy(name="top1"), SparseTopK(k, name="top5")]


# Run folders and .keras files written before the recipe moved into the package name these classes under the
# scripts' old package; they keep loading (and resuming) through these aliases. New files use "keras_bert3d>".
for _cls in (ReferenceSGD, SparseTopK, TopK):
    keras.saving.get_custom_objects().setdefault(f"keras_bert3d_training>{_cls.__name__}", _cls)
del _cls
