"""The reference training recipe (REFERENCE.md 5.2-5.5) in Keras terms, and the callbacks of a run.

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
  reference divides the loss by ``iter_size``); `EpochAccumulationReset` drops a partial accumulation at
  each epoch start, as the reference zeroes its gradients there.
- ``decay_norms_and_biases=False`` excludes norms, biases, the CLS token and positions
  (`no_decay_variables`) through ``exclude_from_weight_decay``.

Loss: cross-entropy on logits (categorical when mixup/cutmix give one-hot labels). Metrics: top-1, top-5.
Callbacks: `ReferenceReduceLROnPlateau` (torch semantics: relative threshold 1e-4, the LR drops after
``patience + 1`` bad epochs), `AtomicBestCheckpoint` (best val top-1, ``>=`` as the reference),
`HistoryCSV`, `EpochAccumulationReset`, and `TrainingBackup`, which makes a killed run resume at the
step where its last backup was taken, with the same result as an uninterrupted run.
"""
import csv
import glob
import json
import math
import os

import keras
import numpy as np

RECIPES = {"adamw": {"learning_rate": 1e-5}, "sgd": {"learning_rate": 1e-2}}
NO_DECAY_NAMES = ("cls_token", "position_embedding")


# ----------------------------------------------------------------------------------------------- optimisers
@keras.saving.register_keras_serializable(package="keras_bert3d_training")
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


@keras.saving.register_keras_serializable(package="keras_bert3d_training")
class SparseTopK(keras.metrics.SparseTopKCategoricalAccuracy):
    """Top-k accuracy that accepts float16/bfloat16 logits (mixed precision: Keras' in_top_k wants float32)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, keras.ops.cast(y_pred, "float32"), sample_weight)


@keras.saving.register_keras_serializable(package="keras_bert3d_training")
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


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer (mixed_float16)


# ----------------------------------------------------------------------------------------------- saving
def atomic_write_text(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_model_atomic(model, path):
    """``model`` (architecture and weights, no optimiser state) to ``path`` (.keras): written to a
    temporary file in the same folder, then renamed, so a crash never leaves a half-written file."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base[:-len('.keras')]}.tmp.keras")
    clone.save(tmp)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------- callbacks
class StatefulCallback(keras.callbacks.Callback):
    """A callback whose state `TrainingBackup` saves and restores (JSON-ready dict)."""

    def get_state(self):
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError


class ReferenceReduceLROnPlateau(StatefulCallback):
    """torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", threshold=1e-4 relative, cooldown 0), stepped
    once per epoch on ``monitor``: the LR is multiplied by ``factor`` once ``patience + 1`` epochs in a row
    fail to go below ``best * (1 - threshold)``. (Keras' own ReduceLROnPlateau uses an absolute
    ``min_delta`` and drops after ``patience`` bad epochs.)"""

    def __init__(self, monitor="val_loss", factor=0.1, patience=5, threshold=1e-4, cooldown=0, min_lr=0.0,
                 verbose=1):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"`factor` must be in (0, 1); received factor={factor}")
        self.monitor, self.factor, self.patience, self.threshold = monitor, factor, patience, threshold
        self.cooldown, self.min_lr, self.verbose = cooldown, min_lr, verbose
        self.best, self.num_bad_epochs, self.cooldown_counter = math.inf, 0, 0

    def get_state(self):
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.best, self.num_bad_epochs = float(state["best"]), int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        current = logs.get(self.monitor)
        if current is None:
            return
        current = float(current)
        if current < self.best * (1.0 - self.threshold):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            optimizer = _inner(self.model.optimizer)
            old = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            new = max(old * self.factor, self.min_lr)
            if old - new > 1e-8:
                optimizer.learning_rate = new
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} has not improved for {self.num_bad_epochs} epochs; "
                          f"learning rate {old:.3g} -> {new:.3g}", flush=True)
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0


class AtomicBestCheckpoint(StatefulCallback):
    """Saves the model to ``path`` (.keras, atomically) whenever ``monitor`` (val top-1) is ``>=`` its best."""

    def __init__(self, path, monitor="val_top1", verbose=1):
        super().__init__()
        if not str(path).endswith(".keras"):
            raise ValueError(f"`path` must end with .keras; received path={path!r}")
        self.path, self.monitor, self.verbose = os.fspath(path), monitor, verbose
        self.best, self.best_epoch = None, None

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or (self.best is not None and float(value) < self.best):
            return
        self.best, self.best_epoch = float(value), epoch
        save_model_atomic(self.model, self.path)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {self.monitor} = {float(value):.4f}, the best so far: saved {self.path}",
                  flush=True)


class HistoryCSV(StatefulCallback):
    """Keeps every epoch's logs (and the learning rate) and rewrites ``path`` (CSV) atomically after each
    epoch; unlike an appending CSVLogger, an epoch redone after a crash is never written twice."""

    def __init__(self, path):
        super().__init__()
        self.path, self.rows = os.fspath(path), []

    def get_state(self):
        return {"rows": self.rows}

    def set_state(self, state):
        self.rows = [dict(row) for row in state["rows"]]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        row["learning_rate"] = float(keras.ops.convert_to_numpy(_inner(self.model.optimizer).learning_rate))
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def _accumulation_variables(optimizer):
    optimizer = _inner(optimizer)
    if not optimizer.gradient_accumulation_steps:
        return None, []
    iteration = [v for v in optimizer.variables if v.name == "iteration"]
    accumulators = [v for v in optimizer.variables if v.name.endswith("gradient_accumulator")]
    if len(iteration) != 1:
        raise ValueError(f"cannot find the iteration counter of {type(optimizer).__name__}")
    return iteration[0], accumulators


class EpochAccumulationReset(keras.callbacks.Callback):
    """Drops a partial gradient accumulation at the start of each epoch (the reference zeroes its
    gradients there): zero accumulators, and the micro-step counter rounded down to a whole optimiser
    step. ``resume_epoch``: the epoch a run resumes in the middle of (its accumulation is kept)."""

    def __init__(self, resume_epoch=None):
        super().__init__()
        self.resume_epoch = resume_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.resume_epoch:
            return
        iteration, accumulators = _accumulation_variables(self.model.optimizer)
        if iteration is None or not _inner(self.model.optimizer).built:
            return
        steps = _inner(self.model.optimizer).gradient_accumulation_steps
        iteration.assign(int(keras.ops.convert_to_numpy(iteration)) // steps * steps)
        for accumulator in accumulators:
            accumulator.assign(keras.ops.zeros(accumulator.shape, accumulator.dtype))


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the whole training state every ``save_freq`` steps and at each epoch end, so that a killed
    run started again resumes at the step of its last backup and ends as an uninterrupted run would.

    Keras' ``BackupAndRestore`` keeps the weights and optimiser but restarts an interrupted epoch from its
    first batch; this one also keeps where in the epoch the run was (the caller skips the batches done,
    see `train.py`), the running train metrics of that epoch, the dropout/masking seed states and the state
    of the `StatefulCallback` s (plateau counters, best top-1, history). Files in ``backup_dir``:
    ``ckpt-<n>.weights.h5`` (model + optimiser), ``ckpt-<n>.extras.npz`` (seed and metric states) and
    ``state.json`` (epoch, step, callback states), which is replaced atomically after the other two are
    written: a kill at any moment leaves a consistent backup.

    Checked bit-exact against uninterrupted runs with the default strategy (tests/training). Under a
    one-replica CPU ``MirroredStrategy`` a restored run continued but did not reproduce the uninterrupted
    one (BatchNorm moving statistics updated differently after the restore; cause not found).
    """

    def __init__(self, backup_dir, save_freq=100, stateful=(), extra_state=None, steps_per_epoch=None):
        super().__init__()
        if save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"`save_freq` must be 'epoch' or an int >= 1; received save_freq={save_freq!r}")
        self.backup_dir, self.save_freq, self.stateful = os.fspath(backup_dir), save_freq, dict(stateful)
        self.extra_state = extra_state  # callable -> JSON-ready dict saved with each backup
        self.steps_per_epoch = steps_per_epoch  # the last step of an epoch is backed up by on_epoch_end
        self.state = self.read(self.backup_dir)
        self.epoch, self.step, self._since_save = 0, 0, 0
        self._pending_metrics = None

    @staticmethod
    def read(backup_dir):
        """The ``state.json`` of ``backup_dir`` (None when there is no backup)."""
        path = os.path.join(backup_dir, "state.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    @property
    def resume_point(self):
        """``(epoch, step)`` where training continues: (0, 0) without a backup."""
        return (self.state["epoch"], self.state["step"]) if self.state else (0, 0)

    def _extra_variables(self):
        saved = {id(v) for v in self.model.weights}
        seeds = [v for v in self.model.variables if id(v) not in saved]  # SeedGenerator states
        return seeds, list(self.model.metrics_variables)

    def restore(self, model):
        """Loads the backup into ``model`` (compiled, not yet fitted). The metric states are put back
        at the start of the resumed epoch (fit resets metrics there). Returns the resume point."""
        if not self.state:
            return (0, 0)
        self.set_model(model)
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(self.backup_dir, self.state["weights"]))
        with np.load(os.path.join(self.backup_dir, self.state["extras"])) as extras:
            seeds, _ = self._extra_variables()
            values = [extras[f"seed_{i}"] for i in range(int(extras["num_seeds"]))]
            if len(values) != len(seeds):
                raise ValueError(f"the backup in {self.backup_dir} holds {len(values)} seed states; the model has "
                                 f"{len(seeds)}: it was made by a different model")
            for variable, value in zip(seeds, values):
                variable.assign(value)
            self._pending_metrics = [extras[f"metric_{i}"] for i in range(int(extras["num_metrics"]))]
        for name, callback in self.stateful.items():
            if name in self.state["callbacks"]:
                callback.set_state(self.state["callbacks"][name])
        self.epoch, self.step = self.resume_point
        return self.resume_point

    def on_epoch_begin(self, epoch, logs=None):
        resumed = self.state is not None and epoch == self.state["epoch"] and self.state["step"] > 0
        self.epoch, self.step = epoch, self.state["step"] if resumed else 0
        if resumed and self._pending_metrics is not None:
            _, metrics = self._extra_variables()
            if len(metrics) != len(self._pending_metrics):
                raise ValueError(f"the backup holds {len(self._pending_metrics)} metric states; the model has "
                                 f"{len(metrics)} (build its compiled metrics, e.g. with one evaluate batch)")
            for variable, value in zip(metrics, self._pending_metrics):
                variable.assign(value)
        self._pending_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self._since_save += 1
        last = self.steps_per_epoch is not None and self.step >= self.steps_per_epoch
        if self.save_freq != "epoch" and self._since_save >= self.save_freq and not last:
            self.save(self.epoch, self.step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)

    def save(self, epoch, step):
        """Writes the backup of the current state as ``(epoch, step)`` (the next step to run)."""
        os.makedirs(self.backup_dir, exist_ok=True)
        number = (self.state["number"] + 1) if self.state else 1
        weights, extras = f"ckpt-{number}.weights.h5", f"ckpt-{number}.extras.npz"
        self.model.save_weights(os.path.join(self.backup_dir, weights))
        seeds, metrics = self._extra_variables()
        arrays = {f"seed_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(seeds)}
        arrays.update({f"metric_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(metrics)})
        with open(os.path.join(self.backup_dir, extras), "wb") as f:
            np.savez(f, num_seeds=len(seeds), num_metrics=len(metrics), **arrays)
        state = {"epoch": epoch, "step": step, "number": number, "weights": weights, "extras": extras,
                 "callbacks": {name: cb.get_state() for name, cb in self.stateful.items()},
                 "extra": self.extra_state() if self.extra_state else {}}
        atomic_write_text(os.path.join(self.backup_dir, "state.json"), json.dumps(state))
        self.state, self._since_save = state, 0
        for path in glob.glob(os.path.join(self.backup_dir, "ckpt-*")):
            if os.path.basename(path) not in (weights, extras):
                os.remove(path)
