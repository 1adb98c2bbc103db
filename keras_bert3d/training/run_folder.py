"""The run folder of a training run, ``<output_dir>/<name>/``: every file name in it, and the atomic writes.

A run folder holds what `keras_bert3d.training.train.train` writes (``config.yaml``, ``class_names.json``,
``backup/``, ``best.keras``, ``last.keras``, ``history.csv``, ``logs/``, ``summary.json``, ``train.lock``), what
`keras_bert3d.training.evaluate.evaluate` adds (``eval_<clips>x<crops>/`` with ``metrics.json``,
``per_class.csv``, ``confusion.png``, ``predictions.csv``, ``logits.npz``) and the tuner's folder ``tune/``
(``leaderboard.csv``, ``best_config.yaml``, ``logs/``). The names below are the only place they are spelled.

Files are written through keras_bert3d.atomic (temporary file, fsync, rename), so a crash never leaves a
half-written file; `write_run_files` writes the resolved config and the class names, after
`check_resume` has made sure that a backup in the folder belongs to the same run.
"""
import json
import os

from keras_bert3d.atomic import atomic_write_text
from keras_bert3d.serving.model_files import CLASS_NAMES_FILE as CLASS_NAMES  # also read beside exported models

CONFIG = "config.yaml"
BACKUP = "backup"
BACKUP_STATE = "state.json"
BACKUP_PREVIOUS_STATE = "state.previous.json"  # the backup before, kept until the next one is written
BACKUP_CHECKPOINT = "checkpoint"  # the custom loop's tf.train.CheckpointManager index
LOCK = "train.lock"  # keras_bert3d.training.run_lock.RunLock
BEST = "best.keras"
LAST = "last.keras"
CHECKPOINTS = ("best", "last")  # `checkpoint_file` names: BEST, LAST
HISTORY = "history.csv"
LOGS = "logs"
SUMMARY = "summary.json"
TUNE = "tune"
LEADERBOARD = "leaderboard.csv"
BEST_CONFIG = "best_config.yaml"
METRICS = "metrics.json"
PER_CLASS = "per_class.csv"
CONFUSION = "confusion.png"
PREDICTIONS = "predictions.csv"
LOGITS = "logits.npz"


def checkpoint_file(checkpoint):
    """``"best"`` -> ``best.keras`` (`BEST`), ``"last"`` -> ``last.keras`` (`LAST`)."""
    return f"{checkpoint}.keras"


def eval_folder(tag, two_stream=False):
    """The folder of an evaluation report: ``eval_<tag>`` or ``eval_two_stream_<tag>`` (tag ``<clips>x<crops>``)."""
    return f"eval_two_stream_{tag}" if two_stream else f"eval_{tag}"


def backup_files(number):
    """The model + optimiser weights and the extra states of backup ``number`` (`TrainingBackup`)."""
    return f"ckpt-{number}.weights.h5", f"ckpt-{number}.extras.npz"


def worker_temp(task_type, task_id):
    """The throw-away folder where a non-chief worker of a multi-worker run writes its checkpoints."""
    return f".workertemp_{task_type}_{task_id}"


def has_backup(run_dir):
    """True when ``run_dir/backup`` holds a backup to resume: `TrainingBackup`'s ``state.json`` or the custom
    loop's ``checkpoint`` (keras_bert3d.training.distributed)."""
    backup = os.path.join(run_dir, BACKUP)
    return any(os.path.isfile(os.path.join(backup, name)) for name in (BACKUP_STATE, BACKUP_CHECKPOINT))


def check_resume(run_dir, config):
    """Refuses to resume a backup of ``run_dir`` made by a run with other numbers: another ``model`` or ``data``
    section, or another ``train`` section but for the keys that `keras_bert3d.training.config.RESUMABLE_TRAIN_KEYS`
    lists. The error names the keys."""
    from keras_bert3d.training.config import resume_conflicts
    from keras_bert3d.training.config_files import load_config

    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path) or not has_backup(run_dir):
        return
    changed = resume_conflicts(load_config(path), config)
    if changed:
        keys = ", ".join(f"{key} ({old!r} -> {new!r})" for key, old, new in changed)
        raise ValueError(f"{run_dir} holds a backup of a run with other values of {keys}: resume with the same "
                         f"config ({path}), or delete {os.path.join(run_dir, BACKUP)} to start over")


def keep_previous_models(run_dir):
    """Before a run starts over in ``run_dir`` (no backup), renames the ``best.keras`` and ``last.keras`` of the
    run before to ``best.<time>.keras`` / ``last.<time>.keras`` (the time they were written, UTC), so the new run
    never overwrites them. Returns the new paths."""
    import datetime

    kept = []
    for checkpoint in CHECKPOINTS:
        path = os.path.join(run_dir, checkpoint_file(checkpoint))
        if not os.path.isfile(path):
            continue
        written = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        stem = f"{checkpoint}.{written:%Y%m%dT%H%M%SZ}"
        target, n = os.path.join(run_dir, f"{stem}.keras"), 1
        while os.path.exists(target):
            n += 1
            target = os.path.join(run_dir, f"{stem}-{n}.keras")
        os.replace(path, target)
        kept.append(target)
    return kept


def write_run_files(run_dir, config, class_names):
    """``config.yaml`` (the config as run) and ``class_names.json``, after `check_resume`; a run that starts
    over keeps the models of the run before (`keep_previous_models`). Returns the kept models' paths."""
    from keras_bert3d.training.config_files import save_config

    check_resume(run_dir, config)
    kept = [] if has_backup(run_dir) else keep_previous_models(run_dir)
    save_config(config, os.path.join(run_dir, CONFIG))
    atomic_write_text(os.path.join(run_dir, CLASS_NAMES), json.dumps(class_names))
    return kept


def write_summary(run_dir, summary):
    atomic_write_text(os.path.join(run_dir, SUMMARY), json.dumps(summary, indent=1))
