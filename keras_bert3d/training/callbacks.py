"""The Keras callbacks of a training run (`keras_bert3d.training.train`, `keras_bert3d.training.tune`), and the atomic writes they share.

- `ReferenceReduceLROnPlateau`: torch's ReduceLROnPlateau semantics (relative threshold 1e-4, the LR drops
  after ``patience + 1`` bad epochs).
- `AtomicBestCheckpoint`: the best val top-1 model (``>=`` as the reference), saved atomically.
- `HistoryCSV`: every epoch's logs and learning rate, rewritten atomically after each epoch.
- `EpochAccumulationReset`: drops a partial gradient accumulation at each epoch start, as the reference zeroes
  its gradients there (see `keras_bert3d.models.recipe`).
- `TrainingBackup`: makes a killed run resume at the step where its last backup was taken, with the same
  result as an uninterrupted run; it saves and restores the state of the `StatefulCallback` s above.
- `RunFolderCallbacks`: the callbacks that keep a run folder (TensorBoard ``logs/``, ``history.csv``, the
  plateau rule, ``best.keras``), one set for `model.fit` and the custom multi-worker loop alike.
- `atomic_write_text`, `save_model_atomic`: write through a temporary file and ``os.replace``, so a crash
  never leaves a half-written file (also used by train.py for its run files).
"""
import csv
import glob
import json
import math
import os

import keras
import numpy as np


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
    """Saves the model to ``path`` (.keras, atomically) whenever ``monitor`` (val top-1) is ``>=`` its best
    (``mode="min"``: ``<=``, e.g. the train loss of a run without validation)."""

    def __init__(self, path, monitor="val_top1", verbose=1, mode="max"):
        super().__init__()
        if not str(path).endswith(".keras"):
            raise ValueError(f"`path` must end with .keras; received path={path!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'; received mode={mode!r}")
        self.path, self.monitor, self.verbose, self.mode = os.fspath(path), monitor, verbose, mode
        self.best, self.best_epoch = None, None

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        sign = 1.0 if self.mode == "max" else -1.0
        if value is None or (self.best is not None and sign * float(value) < sign * self.best):
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


class RunFolderCallbacks:
    """The callbacks that keep a run folder, one set for `model.fit` and `distributed.custom_fit`.

    ``callbacks`` (in this order: the LR of an epoch is logged before the plateau rule changes it):
    ``keras.callbacks.TensorBoard`` (``logs/``), `HistoryCSV` (``history.csv``),
    `ReferenceReduceLROnPlateau` on ``plateau_monitor`` (when ``plateau_patience`` is not None) and
    `AtomicBestCheckpoint` (``best.keras`` on ``best_monitor``, ``best_mode``). ``stateful`` names those
    whose state a backup keeps (``history``, ``plateau``, ``best``). ``write=False`` (a non-chief worker of
    a multi-worker run) keeps only the plateau rule, which every worker must apply alike.
    """

    def __init__(self, run_dir, plateau_patience=None, plateau_factor=0.1, plateau_threshold=1e-4, min_lr=0.0,
                 plateau_monitor="val_loss", best_monitor="val_top1", best_mode="max", write=True, verbose=1):
        run_dir = os.fspath(run_dir)
        self.tensorboard = keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False) \
            if write else None
        self.history = HistoryCSV(os.path.join(run_dir, "history.csv")) if write else None
        self.plateau = None if plateau_patience is None else ReferenceReduceLROnPlateau(
            plateau_monitor, plateau_factor, plateau_patience, plateau_threshold, min_lr=min_lr, verbose=verbose)
        self.best = AtomicBestCheckpoint(os.path.join(run_dir, "best.keras"), best_monitor, verbose=verbose,
                                         mode=best_mode) if write else None

    @property
    def callbacks(self):
        return [cb for cb in (self.tensorboard, self.history, self.plateau, self.best) if cb is not None]

    @property
    def stateful(self):
        return {name: cb for name, cb in (("history", self.history), ("plateau", self.plateau), ("best", self.best))
                if cb is not None}


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
