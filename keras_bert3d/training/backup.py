"""The resumable backup of a `model.fit` run: `TrainingBackup`.

A killed run started again resumes at the step where its last backup was taken, with the same result as an
uninterrupted run; the backup also keeps the state of the `keras_bert3d.training.callbacks.StatefulCallback` s
(plateau counters, best top-1, history). The custom multi-worker loop keeps its own backup (a
``tf.train.CheckpointManager``, keras_bert3d.training.distributed): every worker takes part in its saves.
"""
import json
import os
import re

import keras
import numpy as np

from keras_bert3d.training import run_folder
from keras_bert3d.atomic import atomic_open, atomic_path, atomic_write_text


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the whole training state every ``save_freq`` steps and at each epoch end, so that a killed
    run started again resumes at the step of its last backup and ends as an uninterrupted run would.

    Keras' ``BackupAndRestore`` keeps the weights and optimiser but restarts an interrupted epoch from its
    first batch; this one also keeps where in the epoch the run was (the caller skips the batches done,
    see `train.py`), the running train metrics of that epoch, the dropout/masking seed states and the state
    of the `StatefulCallback` s (plateau counters, best top-1, history). Files in ``backup_dir``:
    ``ckpt-<n>.weights.h5`` (model + optimiser), ``ckpt-<n>.extras.npz`` (seed and metric states) and
    ``state.json`` (epoch, step, callback states), which is replaced atomically after the other two are
    written, and ``state.previous.json`` with the files of the backup before (so a ``state.json`` found
    corrupt still leaves one to resume from). Every file is fsynced before its rename (keras_bert3d.atomic): a
    kill or a power loss at any moment leaves a consistent backup. Old backups are removed by listing
    ``backup_dir`` and matching exact ``ckpt-<n>`` names, never by a glob pattern built from a path.

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
        """The ``state.json`` of ``backup_dir`` (None when there is no backup). A file that cannot be read as a
        backup state raises a ValueError naming it and the previous backup, if there is one."""
        path = os.path.join(backup_dir, run_folder.BACKUP_STATE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                state = json.load(f)
            if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
                raise ValueError(f"expected a JSON object with the keys {sorted(_STATE_KEYS)}")
        except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            previous = os.path.join(backup_dir, run_folder.BACKUP_PREVIOUS_STATE)
            offer = (f"the previous backup is {previous}: copy it over {path} to resume from it, or delete "
                     f"{backup_dir} to start over" if os.path.isfile(previous) else
                     f"there is no previous backup: delete {backup_dir} to start over")
            raise ValueError(f"the backup state {path} is corrupt ({error}); {offer}") from error
        return state

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
        weights, extras = run_folder.backup_files(number)
        with atomic_path(os.path.join(self.backup_dir, weights)) as tmp:
            self.model.save_weights(tmp)
        seeds, metrics = self._extra_variables()
        arrays = {f"seed_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(seeds)}
        arrays.update({f"metric_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(metrics)})
        with atomic_open(os.path.join(self.backup_dir, extras), "wb") as f:
            np.savez(f, num_seeds=len(seeds), num_metrics=len(metrics), **arrays)
        state = {"epoch": epoch, "step": step, "number": number, "weights": weights, "extras": extras,
                 "callbacks": {name: cb.get_state() for name, cb in self.stateful.items()},
                 "extra": self.extra_state() if self.extra_state else {}}
        keep = {number}
        if self.state:  # kept as the previous backup, until the next save
            keep.add(self.state["number"])
            atomic_write_text(os.path.join(self.backup_dir, run_folder.BACKUP_PREVIOUS_STATE), json.dumps(self.state))
        atomic_write_text(os.path.join(self.backup_dir, run_folder.BACKUP_STATE), json.dumps(state))
        self.state, self._since_save = state, 0
        remove_backups(self.backup_dir, keep)


_STATE_KEYS = frozenset(("epoch", "step", "number", "weights", "extras", "callbacks"))
_BACKUP_FILE = re.compile(r"ckpt-(\d+)\.(weights\.h5|extras\.npz)")


def remove_backups(backup_dir, keep):
    """Removes the ``ckpt-<n>`` files of ``backup_dir`` whose number is not in ``keep``: the folder is listed
    and each name matched whole (no glob pattern, so no character of the run's path can widen the match)."""
    for name in os.listdir(backup_dir):
        match = _BACKUP_FILE.fullmatch(name)
        if match and int(match.group(1)) not in keep:
            os.remove(os.path.join(backup_dir, name))
