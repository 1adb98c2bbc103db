"""Tune the BERT head and the recipe with KerasTuner: ``bert3d tune CONFIG [key=value ...]``.

    bert3d tune training/configs/hmdb51_r2plus1d_32f_bert.yaml --epochs 9         # Hyperband
    bert3d tune CONFIG --tuner random --max-trials 20 --epochs 5
    bert3d tune CONFIG --tuner bayesian --only learning_rate,weight_decay --max-trials 10

Each trial builds the config's model (its preset and overrides, or its VideoClassifier config) with the
trial's values, compiles it with the training recipe (keras_bert3d.models.recipe: AdamW or the reference SGD,
cross-entropy, top-1/top-5) and fits it on the config's train subset, validating on its val subset; the
objective is the best epoch's validation top-1 (``--objective``). The search space
(keras_bert3d.training.search_space ``SEARCH_SPACE``;
``--space FILE`` changes it, ``--only`` keeps some of it) covers the BERT ``num_heads``, ``num_layers``,
``bert_dropout`` and ``mask_keep_prob``, the ``learning_rate`` and ``weight_decay``, and
``freeze_backbone`` (with the SGD recipe the default learning-rate range is 1e-4..1e-1). At the end the
leaderboard is written to ``leaderboard.csv`` (`bert3d tune` prints it) and the best trial is written as a
training config, ``best_config.yaml``, for ``bert3d train``. The hypermodel and the tuner are
keras_bert3d.training.hypermodel's.

Everything goes to ``--directory`` (default ``<output_dir>/<name>/tune``); running the same command again
continues the search (``--overwrite`` starts over).

Strategies: ``default``; ``mirrored`` (all local GPUs: KerasTuner's ``distribution_strategy``, each trial's
``model.fit`` data-parallel). ``multi_worker`` is refused: KerasTuner trains each trial with ``model.fit``,
which Keras 3 cannot run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), and the custom
loop of keras_bert3d.training.distributed is not a ``fit`` a tuner can drive. To use several machines, use
KerasTuner's distributed tuning instead (trials in parallel, one per worker): run this same command on every
machine with ``KERASTUNER_TUNER_ID`` (``chief`` on one, ``tuner0``, ``tuner1``, ... on the others),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (the chief's address) set; each worker may use
``--strategy mirrored`` for its own GPUs.
"""
import copy
import csv
import logging
import math
import os

from keras_bert3d.atomic import atomic_open
from keras_bert3d.training import model_setup, pipelines, run_folder
from keras_bert3d.training.config import validate_config
from keras_bert3d.training.config_files import save_config
from keras_bert3d.training.hypermodel import make_hypermodel, make_tuner, with_values
from keras_bert3d.training.search_space import (SEARCH_SPACE, SGD_LEARNING_RATE, TRAIN_KEYS, fit_space_to_model,
                                                 resolve_space)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ results
def leaderboard(tuner, space, epochs=None):
    """Completed trials, best first: ``[{"rank", "trial", "score", "epochs", <hyperparameters>}]`` (epochs: the
    trial's own under Hyperband, else ``epochs``)."""
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    rows = []
    for rank, trial in enumerate(trials, start=1):
        values = trial.hyperparameters.values
        row = {"rank": rank, "trial": trial.trial_id, "score": trial.score,
               "epochs": values.get("tuner/epochs", epochs if epochs is not None else "")}
        row.update({name: values.get(name, "") for name in space})
        rows.append(row)
    return rows


def format_leaderboard(rows, objective):
    if not rows:
        return "no completed trial"
    header = ["rank", "trial", objective, "epochs"] + [k for k in rows[0] if k not in ("rank", "trial", "score",
                                                                                          "epochs")]
    table = [[str(r["rank"]), str(r["trial"]), show(r["score"]), str(r["epochs"])]
             + [show(r[k]) for k in header[4:]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def show(value):
    """A leaderboard cell: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_leaderboard(rows, path):
    if not rows:
        return None
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def best_config(config, values):
    """The training config of the best trial: the searched values written into ``config``."""
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    best = copy.deepcopy(config)
    best["name"] = f"{config['name']}_tuned"
    best["model"] = with_values(config["model"], values)
    for key in TRAIN_KEYS:
        if key in values:
            best["train"][key] = float(values[key])
    return validate_config(best)


# ------------------------------------------------------------------------------------------------ tune
def tune(config, tuner="hyperband", epochs=None, max_trials=10, factor=3, hyperband_iterations=1,
         executions_per_trial=1, objective="val_top1", space=None, only=None, directory=None, overwrite=False,
         verbose=None):
    """Runs the search ``config`` (a `load_config` dict) describes and writes ``best_config.yaml``.

    Args:
        tuner: ``"hyperband"`` (default), ``"random"`` or ``"bayesian"``.
        epochs: epochs per trial (Hyperband: its ``max_epochs``); default ``train.epochs``.
        max_trials: trials of random and Bayesian search.
        factor, hyperband_iterations: Hyperband's reduction factor and number of sweeps.
        objective: ``"val_top1"`` (default), ``"val_top5"`` or ``"val_loss"``.
        space, only: see `resolve_space`.
        directory: the tuner's folder; default ``<output_dir>/<name>/tune``.

    Returns:
        ``{"best_config", "best_hyperparameters", "best_score", "leaderboard", "directory", "skipped_videos"}``
        (`format_leaderboard` gives the leaderboard's text).
    """
    config = validate_config(config)
    tc = config["train"]
    if tc["strategy"] == "multi_worker":
        raise ValueError("--strategy multi_worker is not supported by tuning: KerasTuner fits each trial with "
                         "model.fit, which Keras 3 cannot run under MultiWorkerMirroredStrategy "
                         "(keras-team/keras#20585). Use --strategy mirrored for the GPUs of one machine, and "
                         "KerasTuner's distributed tuning (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, "
                         "KERASTUNER_ORACLE_PORT on each machine) to run trials on several machines.")
    from keras_bert3d.training import strategies

    strategy = strategies.get_strategy(tc["strategy"]) if tc["strategy"] != "default" else None
    with model_setup.precision(tc["mixed_precision"]):
        return _tune(config, strategy, tuner, epochs, max_trials, factor, hyperband_iterations,
                     executions_per_trial, objective, space, only, directory, overwrite,
                     tc["verbose"] if verbose is None else verbose)


def _tune(config, strategy, tuner_name, epochs, max_trials, factor, hyperband_iterations, executions_per_trial,
          objective, space, only, directory, overwrite, verbose):
    import keras

    data, tc = config["data"], config["train"]
    space = resolve_space(space, only)
    preprocessing = model_setup.model_preprocessing(config["model"])
    train_index, val_index, num_classes = model_setup.load_indexes(config)
    base = model_setup.build_classifier(config["model"], num_classes)
    space = fit_space_to_model(space, base)
    del base
    keras.backend.clear_session()

    epochs = epochs or tc["epochs"]
    steps = tc["steps_per_epoch"] or math.ceil(len(train_index) / data["batch_size"])
    pipes = pipelines.Pipelines(data, preprocessing, train_index, val_index, num_classes, tc["seed"], steps)
    directory = directory or os.path.join(config["output_dir"], config["name"], run_folder.TUNE)
    optimizer = tc["optimizer"] if tc["optimizer"] != "auto" else model_setup.default_optimizer(config["model"])
    if optimizer == "sgd" and space.get("learning_rate") == SEARCH_SPACE["learning_rate"]:
        space = dict(space, learning_rate=SGD_LEARNING_RATE)  # around the SGD recipe's 1e-2, not AdamW's 1e-5
    hypermodel = make_hypermodel(config, space, num_classes, optimizer, pipes.one_hot, pipes.counter)
    tuner = make_tuner(tuner_name, hypermodel, objective, directory, tuner_name, epochs, max_trials, factor,
                       hyperband_iterations, executions_per_trial, seed=tc["seed"] + 1, overwrite=overwrite,
                       strategy=strategy)
    if verbose:
        log.info(f"Tuning {len(space)} hyperparameters with {tuner_name} ({objective}); {len(train_index)} train / "
                 f"{len(val_index)} val videos, {steps} steps per epoch, up to {epochs} epochs per trial")
        tuner.search_space_summary()
    callbacks = [keras.callbacks.TensorBoard(os.path.join(directory, run_folder.LOGS), profile_batch=0)]
    tuner.search(pipes.train_epochs(0, epochs).repeat(), validation_data=pipes.validation(), epochs=epochs,
                 steps_per_epoch=steps, validation_steps=tc["validation_steps"], callbacks=callbacks,
                 shuffle=False, verbose=verbose)  # the pipeline shuffles
    rows = leaderboard(tuner, space, epochs)
    if not rows:
        raise ValueError(f"no trial completed in {directory}")
    write_leaderboard(rows, os.path.join(directory, run_folder.LEADERBOARD))
    values = tuner.get_best_hyperparameters(1)[0].values
    path = save_config(best_config(config, values), os.path.join(directory, run_folder.BEST_CONFIG))
    best = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    return {"best_config": path, "best_hyperparameters": best, "best_score": rows[0]["score"], "leaderboard": rows,
            "directory": directory, "skipped_videos": pipes.counter.total}
