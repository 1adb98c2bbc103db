"""The Keras callbacks of a training run (`keras_bert3d.training.train`, `keras_bert3d.training.tune`), and the run folder they keep.

- `ReferenceReduceLROnPlateau`: torch's ReduceLROnPlateau semantics (relative threshold 1e-4, the LR drops
  after ``patience + 1`` bad epochs).
- `AtomicBestCheckpoint`: the best val top-1 model (``>=`` as the reference), saved atomically.
- `HistoryCSV`: every epoch's logs and learning rate, rewritten atomically after each epoch.
- `EpochAccumulationReset`: drops a partial gradient accumulation at each epoch start, as the reference zeroes
  its gradients there (see `keras_bert3d.models.recipe`).
- `StatefulCallback`: a callback whose state the backups keep (`keras_bert3d.training.backup.TrainingBackup`
  and the custom loop's checkpoint).
- `RunFolderCallbacks`: the callbacks that keep a run folder (TensorBoard ``logs/``, ``history.csv``, the
  plateau rule, ``best.keras``), one set for `model.fit` and the custom multi-worker loop alike.
The file names and the atomic writes are keras_bert3d.training.run_folder's.
"""
import csv
import math
import os

import keras
import numpy as np

from keras_bert3d.training import run_folder
from keras_bert3d.atomic import atomic_open, save_model_atomic
from keras_bert3d.models.clip_augmenter import unwrap
from keras_bert3d.validation import check_choice, check_open_unit


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer (mixed_float16)


# ----------------------------------------------------------------------------------------------- callbacks
class StatefulCallback(keras.callbacks.Callback):
    """A callback whose state `keras_bert3d.training.backup.TrainingBackup` saves and restores (JSON-ready dict)."""

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
        check_open_unit("factor", factor)
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
        check_choice("mode", mode, ("max", "min"))
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
        save_model_atomic(unwrap(self.model), self.path)  # the classifier, not a data.augment=device wrapper
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
        with atomic_open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(self.rows)


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
        self.tensorboard = keras.callbacks.TensorBoard(os.path.join(run_dir, run_folder.LOGS), write_graph=False) \
            if write else None
        self.history = HistoryCSV(os.path.join(run_dir, run_folder.HISTORY)) if write else None
        self.plateau = None if plateau_patience is None else ReferenceReduceLROnPlateau(
            plateau_monitor, plateau_factor, plateau_patience, plateau_threshold, min_lr=min_lr, verbose=verbose)
        self.best = AtomicBestCheckpoint(os.path.join(run_dir, run_folder.BEST), best_monitor, verbose=verbose,
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
