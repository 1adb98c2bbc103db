"""Tune the BERT head and the recipe with KerasTuner: ``python -m training.tune CONFIG [key=value ...]``.

    python -m training.tune training/configs/hmdb51_r2plus1d_32f_bert.yaml --epochs 9         # Hyperband
    python -m training.tune CONFIG --tuner random --max-trials 20 --epochs 5
    python -m training.tune CONFIG --tuner bayesian --only learning_rate,weight_decay --max-trials 10

Each trial builds the config's model (its preset and overrides, or its VideoClassifier config) with the
trial's values, compiles it with the training recipe (training/recipe.py: AdamW or the reference SGD,
cross-entropy, top-1/top-5) and fits it on the config's train subset, validating on its val subset; the
objective is the best epoch's validation top-1 (``--objective``). The search space
(training/search_space.py ``SEARCH_SPACE``;
``--space FILE`` changes it, ``--only`` keeps some of it) covers the BERT ``num_heads``, ``num_layers``,
``bert_dropout`` and ``mask_keep_prob``, the ``learning_rate`` and ``weight_decay``, and
``freeze_backbone`` (with the SGD recipe the default learning-rate range is 1e-4..1e-1). At the end the
leaderboard is printed (and written to ``leaderboard.csv``) and the best trial is written as a training
config, ``best_config.yaml``, for ``python -m training.train``.

Everything goes to ``--directory`` (default ``<output_dir>/<name>/tune``); running the same command again
continues the search (``--overwrite`` starts over).

Strategies: ``default``; ``mirrored`` (all local GPUs: KerasTuner's ``distribution_strategy``, each trial's
``model.fit`` data-parallel). ``multi_worker`` is refused: KerasTuner trains each trial with ``model.fit``,
which Keras 3 cannot run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), and the custom
loop of training/distributed.py is not a ``fit`` a tuner can drive. To use several machines, use
KerasTuner's distributed tuning instead (trials in parallel, one per worker): run this same command on every
machine with ``KERASTUNER_TUNER_ID`` (``chief`` on one, ``tuner0``, ``tuner1``, ... on the others),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (the chief's address) set; each worker may use
``--strategy mirrored`` for its own GPUs.
"""
import argparse
import copy
import csv
import math
import os
import sys

if __package__ in (None, ""):  # `python training/tune.py`: make `training` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import pipelines  # noqa: E402
from training.config import load_config, save_config, validate_config  # noqa: E402
from training.search_space import (BERT_KEYS, SEARCH_SPACE, SGD_LEARNING_RATE, TRAIN_KEYS,  # noqa: E402
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

            from training import recipe
            from training.train import build_classifier, load_starting_weights

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
            from keras_bert3d.data.bad_videos import BadVideoReport
            from training import callbacks as cb

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
    from training import distributed

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

    from training.train import build_classifier, default_optimizer, model_preprocessing

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
def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.tune", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) + "\n\nDefault search space:\n"
        + "\n".join(f"  {k}: {v}" for k, v in SEARCH_SPACE.items()))
    parser.add_argument("config", help="training config (YAML or JSON; training/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.steps_per_epoch=50 data.root=/data")
    parser.add_argument("--tuner", choices=TUNERS, default="hyperband", help="search algorithm; default hyperband")
    parser.add_argument("--epochs", type=int, help="epochs per trial (Hyperband: max_epochs); default train.epochs")
    parser.add_argument("--max-trials", type=int, default=10, help="trials of random/bayesian search; default 10")
    parser.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor; default 3")
    parser.add_argument("--hyperband-iterations", type=int, default=1, help="Hyperband sweeps; default 1")
    parser.add_argument("--executions-per-trial", type=int, default=1, help="fits averaged per trial; default 1")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="val_top1",
                        help="what the search optimises; default val_top1 (max)")
    parser.add_argument("--space", help="YAML file: name -> {values: [...]} | {min, max, step, sampling} | a "
                                        "fixed value | null (not searched)")
    parser.add_argument("--only", help="comma-separated names: search these only")
    parser.add_argument("--directory", help="the tuner's folder; default <output_dir>/<name>/tune")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of continuing the search")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                        help="shortcut for train.strategy=... (multi_worker: see below)")
    return parser


def main(argv=None):
    args = build_parser().parse_intermixed_args(argv)
    overrides = list(args.overrides) + ([f"train.strategy={args.strategy}"] if args.strategy else [])
    try:
        config = load_config(args.config, overrides)
        for name in ("epochs", "max_trials", "factor", "hyperband_iterations", "executions_per_trial"):
            value = getattr(args, name)
            if value is not None and value < (2 if name == "factor" else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be >= {2 if name == 'factor' else 1}; "
                                 f"received {value}")
        tune(config, args.tuner, args.epochs, args.max_trials, args.factor, args.hyperband_iterations,
             args.executions_per_trial, args.objective, args.space, args.only.split(",") if args.only else None,
             args.directory, args.overwrite)
    except (ValueError, FileNotFoundError) as err:
        print(f"tune: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
