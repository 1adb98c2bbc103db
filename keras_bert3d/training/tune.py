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
leaderboard is printed (and written to ``leaderboard.csv``) and the best trial is written as a training
config, ``best_config.yaml``, for ``bert3d train``.

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
import math
import os


from keras_bert3d.training import pipelines
from keras_bert3d.training.config import load_config, save_config, validate_config
from keras_bert3d.training.search_space import (BERT_KEYS, SEARCH_SPACE, SGD_LEARNING_RATE, TRAIN_KEYS,
                                                 define, fit_space_to_model, resolve_space)

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVES = {"val_top1": "max", "val_top5": "max", "val_loss": "min"}


# ------------------------------------------------------------------------------------------------ hypermodel
def _with_values(model_config, values):
    """The ``model`` config section with the BERT values applied (to the preset overrides or the config)."""
    model_config = copy.deepcopy(model_config)
    bert = {k: v for k, v in values.items() if k in BERT_KEYS}
    if model_config["preset"] is not None:
        model_config["overrides"].update(bert)
    else:
        inner = model_config["config"]
        inner = inner["config"] if "class_name" in inner else inner
        inner.update(bert)
    if "freeze_backbone" in values:
        model_config["freeze_backbone"] = bool(values["freeze_backbone"])
    return model_config


def _import_keras_tuner():
    import keras_tuner

    return keras_tuner


def make_hypermodel(config, space, num_classes, optimizer, one_hot=False, counter=None):
    """A ``keras_tuner.HyperModel`` whose ``build(hp)`` makes and compiles the trial's model with the
    recipe ``optimizer`` (``"adamw"`` or ``"sgd"``)."""
    keras_tuner = _import_keras_tuner()

    class BERT3DHyperModel(keras_tuner.HyperModel):
        """Builds the config's model with the trial's values and compiles it with the training recipe."""

        def build(self, hp):
            import keras

            from keras_bert3d.models import recipe
            from keras_bert3d.training.train import build_classifier, load_starting_weights

            values = {name: define(hp, name, spec) for name, spec in space.items()}
            tc = config["train"]
            keras.utils.set_random_seed(tc["seed"])  # every trial starts from the same draws
            model_config = _with_values(config["model"], values)
            model = build_classifier(model_config, num_classes)
            if model_config["weights"]:
                load_starting_weights(model, model_config["weights"])
            if model_config["freeze_backbone"]:
                model.backbone.trainable = False
            compiled = recipe.make_optimizer(
                optimizer, model, values.get("learning_rate", tc["learning_rate"]),
                values.get("weight_decay", tc["weight_decay"]), tc["decay_norms_and_biases"],
                tc["gradient_accumulation_steps"], tc["momentum"], tc["dampening"])
            model.compile(optimizer=compiled, loss=recipe.make_loss(one_hot),
                          metrics=recipe.make_metrics(num_classes, one_hot), jit_compile=tc["jit_compile"])
            return model

        def fit(self, hp, model, *args, callbacks=None, **kwargs):
            from keras_bert3d.training.bad_video_report import BadVideoReport
            from keras_bert3d.training import callbacks as cb

            tc = config["train"]
            # Made here, not passed to search(): KerasTuner deep-copies search callbacks (a counter holds a lock).
            extra = [cb.EpochAccumulationReset(),
                     cb.ReferenceReduceLROnPlateau("val_loss", tc["plateau_factor"], tc["plateau_patience"],
                                                   verbose=0)]
            if counter is not None:
                extra.append(BadVideoReport(counter, verbose=1 if tc["verbose"] else 0))
            return pipelines.fit(model, *args, callbacks=list(callbacks or []) + extra, **kwargs)

    return BERT3DHyperModel(name="keras_bert3d")


def make_tuner(name, hypermodel, objective, directory, project_name, epochs, max_trials=10, factor=3,
               hyperband_iterations=1, executions_per_trial=1, seed=None, overwrite=False, strategy=None):
    """The KerasTuner tuner ``name`` (``hyperband``, ``random``, ``bayesian``)."""
    keras_tuner = _import_keras_tuner()
    if name not in TUNERS:
        raise ValueError(f"`tuner` must be one of {list(TUNERS)}; received tuner={name!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {sorted(OBJECTIVES)}; received objective={objective!r}")
    common = dict(objective=keras_tuner.Objective(objective, OBJECTIVES[objective]), directory=directory,
                  project_name=project_name, seed=seed, overwrite=overwrite, distribution_strategy=strategy,
                  executions_per_trial=executions_per_trial)
    if name == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=epochs, factor=factor,
                                     hyperband_iterations=hyperband_iterations, **common)
    if name == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    try:
        import scipy  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as err:
        raise ValueError("--tuner bayesian (KerasTuner's Gaussian-process oracle) needs scipy and scikit-learn: "
                         f"pip install scipy scikit-learn ({err})") from err
    return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)


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
    table = [[str(r["rank"]), str(r["trial"]), _show(r["score"]), str(r["epochs"])]
             + [_show(r[k]) for k in header[4:]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def _show(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_leaderboard(rows, path):
    if not rows:
        return None
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def best_config(config, values):
    """The training config of the best trial: the searched values written into ``config``."""
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    best = copy.deepcopy(config)
    best["name"] = f"{config['name']}_tuned"
    best["model"] = _with_values(config["model"], values)
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
        ``{"best_config", "best_hyperparameters", "best_score", "leaderboard", "directory"}``.
    """
    config = validate_config(config)
    tc = config["train"]
    if tc["strategy"] == "multi_worker":
        raise ValueError("--strategy multi_worker is not supported by tuning: KerasTuner fits each trial with "
                         "model.fit, which Keras 3 cannot run under MultiWorkerMirroredStrategy "
                         "(keras-team/keras#20585). Use --strategy mirrored for the GPUs of one machine, and "
                         "KerasTuner's distributed tuning (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, "
                         "KERASTUNER_ORACLE_PORT on each machine) to run trials on several machines.")
    from keras_bert3d.training import distributed

    strategy = distributed.get_strategy(tc["strategy"]) if tc["strategy"] != "default" else None
    import keras

    previous_policy = keras.config.dtype_policy()
    try:
        if tc["mixed_precision"]:
            keras.config.set_dtype_policy(tc["mixed_precision"])
        return _tune(config, strategy, tuner, epochs, max_trials, factor, hyperband_iterations,
                     executions_per_trial, objective, space, only, directory, overwrite,
                     tc["verbose"] if verbose is None else verbose)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _tune(config, strategy, tuner_name, epochs, max_trials, factor, hyperband_iterations, executions_per_trial,
          objective, space, only, directory, overwrite, verbose):
    import keras

    from keras_bert3d.training.train import build_classifier, default_optimizer, model_preprocessing

    data, tc = config["data"], config["train"]
    space = resolve_space(space, only)
    preprocessing = model_preprocessing(config["model"])
    index = pipelines.build_indexes(data)
    train_index = index(data["train_subset"], preprocessing["modality"])
    val_index = index(data["val_subset"], preprocessing["modality"])
    num_classes = config["model"]["num_classes"] or train_index.num_classes
    if num_classes != train_index.num_classes:
        raise ValueError(f"model.num_classes={num_classes} but the training index has {train_index.num_classes} "
                         "classes")
    base = build_classifier(config["model"], num_classes)
    space = fit_space_to_model(space, base)
    del base
    keras.backend.clear_session()

    epochs = epochs or tc["epochs"]
    steps = tc["steps_per_epoch"] or math.ceil(len(train_index) / data["batch_size"])
    pipes = pipelines.Pipelines(data, preprocessing, train_index, val_index, num_classes, tc["seed"], steps)
    directory = directory or os.path.join(config["output_dir"], config["name"], "tune")
    optimizer = tc["optimizer"] if tc["optimizer"] != "auto" else default_optimizer(config["model"])
    if optimizer == "sgd" and space.get("learning_rate") == SEARCH_SPACE["learning_rate"]:
        space = dict(space, learning_rate=SGD_LEARNING_RATE)  # around the SGD recipe's 1e-2, not AdamW's 1e-5
    hypermodel = make_hypermodel(config, space, num_classes, optimizer, pipes.one_hot, pipes.counter)
    tuner = make_tuner(tuner_name, hypermodel, objective, directory, tuner_name, epochs, max_trials, factor,
                       hyperband_iterations, executions_per_trial, seed=tc["seed"] + 1, overwrite=overwrite,
                       strategy=strategy)
    if verbose:
        print(f"Tuning {len(space)} hyperparameters with {tuner_name} ({objective}); {len(train_index)} train / "
              f"{len(val_index)} val videos, {steps} steps per epoch, up to {epochs} epochs per trial", flush=True)
        tuner.search_space_summary()
    callbacks = [keras.callbacks.TensorBoard(os.path.join(directory, "logs"), profile_batch=0)]
    tuner.search(pipes.train_epochs(0, epochs).repeat(), validation_data=pipes.validation(), epochs=epochs,
                 steps_per_epoch=steps, validation_steps=tc["validation_steps"], callbacks=callbacks,
                 shuffle=False, verbose=verbose)  # the pipeline shuffles
    rows = leaderboard(tuner, space, epochs)
    if not rows:
        raise ValueError(f"no trial completed in {directory}")
    print(format_leaderboard(rows, objective), flush=True)
    write_leaderboard(rows, os.path.join(directory, "leaderboard.csv"))
    values = tuner.get_best_hyperparameters(1)[0].values
    path = save_config(best_config(config, values), os.path.join(directory, "best_config.yaml"))
    best = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    print(f"Best trial {rows[0]['trial']}: {objective} {_show(rows[0]['score'])}; its training config: {path}",
          flush=True)
    return {"best_config": path, "best_hyperparameters": best, "best_score": rows[0]["score"], "leaderboard": rows,
            "directory": directory, "skipped_videos": pipes.counter.total}


# ------------------------------------------------------------------------------------------------ CLI
