"""The reference training recipe (REFERENCE.md 5.2-5.5) in Keras terms: optimisers, loss and metrics.

Optimisers (`make_optimizer`), the reference's by default, Keras' own by a ``keras_`` name:
- ``adamw`` (two_stream_bert2.py, BERT models): `ReferenceAdamW`, torch's AdamW update exactly (the reference's
  opt/AdamW.py): betas (0.9, 0.999), epsilon 1e-8 added to sqrt(v_hat) (after the bias correction), lr 1e-5,
  decoupled weight decay 1e-3 (``p *= 1 - lr * wd`` before the Adam step) on every weight.
- ``sgd`` (two_stream2.py, baselines): `ReferenceSGD`, torch.optim.SGD with momentum 0.9, **dampening 0.9** and
  coupled L2 weight decay 1e-3 (``g += wd * w`` before the momentum buffer; the first step uses the raw gradient).
- ``keras_adamw``: `keras.optimizers.AdamW` with the same arguments (what ``adamw`` was before: Keras puts epsilon
  before the bias correction, eps / sqrt(1 - beta2^t) in torch terms). Any ``keras_<name>`` builds Keras'
  optimizer ``<name>`` (``keras_sgd``, ``keras_adam``, ...) with the learning rate, ``weight_decay`` (Keras'
  decoupled decay), gradient accumulation and, for SGD, ``momentum``; the default learning rate is the
  recipe's of the same name, else adamw's.
- Gradient accumulation over ``gradient_accumulation_steps`` batches, as the reference's ``iter_size``: Keras
  applies the mean of the micro-batch gradients, the same gradient as the reference's sum of the gradients of
  ``loss / iter_size``; BatchNorm statistics move on every micro-batch (each batch is a full forward pass in
  training mode; only the optimizer step waits), as in the reference. The optimizers' step counters count
  applied updates (Keras' ``iterations`` is ``micro-batches // steps``). `EpochAccumulationReset`
  (keras_bert3d.training.callbacks) drops a partial accumulation at each epoch start, as the reference zeroes its
  gradients there. tests/optimizers/test_reference_step.py checks one step and two accumulated steps of the
  BERT head against the reference code's own (tests/fixtures/step_bert5_head.npz, bench/make_step_fixtures.py).
- ``decay_norms_and_biases=False`` excludes norms, biases, the CLS token and positions
  (`no_decay_variables`) through ``exclude_from_weight_decay``.

Loss: cross-entropy on logits (categorical when mixup/cutmix give one-hot labels). Metrics: top-1, top-5.
The callbacks of a run (plateau schedule, best checkpoint, history, backup) are in keras_bert3d.training.callbacks.
"""
import keras

from keras_bert3d.optimizers.reference_adamw import ReferenceAdamW
from keras_bert3d.optimizers.reference_sgd import ReferenceSGD

RECIPES = {"adamw": {"learning_rate": 1e-5}, "sgd": {"learning_rate": 1e-2}}
NO_DECAY_NAMES = ("cls_token", "position_embedding")
KERAS_PREFIX = "keras_"


def no_decay_variables(model):
    """Norm scales/offsets, biases (every weight of rank <= 1, and ``bias*``), the CLS token, positions."""
    return [v for v in model.trainable_weights
            if len(v.shape) <= 1 or v.name.startswith("bias") or v.name in NO_DECAY_NAMES]


def make_optimizer(name, model, learning_rate=None, weight_decay=1e-3, decay_norms_and_biases=True,
                   gradient_accumulation_steps=16, momentum=0.9, dampening=0.9):
    """The reference optimiser ``"adamw"`` or ``"sgd"``, or Keras' own as ``"keras_<name>"`` (module
    docstring); ``learning_rate=None`` takes the recipe's."""
    keras_name = name[len(KERAS_PREFIX):] if isinstance(name, str) and name.startswith(KERAS_PREFIX) else None
    if name not in RECIPES and not keras_name:
        raise ValueError(f"`optimizer` must be one of {sorted(RECIPES)} or 'keras_<name>' (a Keras optimizer, "
                         f"e.g. 'keras_adamw'); received optimizer={name!r}")
    default = RECIPES.get(keras_name or name, RECIPES["adamw"])["learning_rate"]
    lr = float(default if learning_rate is None else learning_rate)
    accumulation = int(gradient_accumulation_steps) if gradient_accumulation_steps > 1 else None
    if keras_name:
        config = {"learning_rate": lr, "weight_decay": float(weight_decay),
                  "gradient_accumulation_steps": accumulation}
        if keras_name.lower() == "sgd":
            config["momentum"] = momentum
        optimizer = keras.optimizers.get({"class_name": keras_name, "config": config})
    elif name == "adamw":
        optimizer = ReferenceAdamW(learning_rate=lr, weight_decay=float(weight_decay), beta_1=0.9, beta_2=0.999,
                                   epsilon=1e-8, gradient_accumulation_steps=accumulation)
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
for _cls in (ReferenceSGD, SparseTopK, TopK):  # ReferenceAdamW is new: no old name
    keras.saving.get_custom_objects().setdefault(f"keras_bert3d_training>{_cls.__name__}", _cls)
del _cls
