"""Train a keras_bert3d model with the reference recipe: ``bert3d train CONFIG [key=value ...]``.

`train(config)` builds the model (a preset or a VideoClassifier config, optionally starting from converted
weights, a .keras file or a reference .pth/.npz), the tf.data pipelines of the train and validation subsets
(keras_bert3d.training.pipelines), and runs ``model.fit`` with the callbacks of keras_bert3d.training.callbacks (strategies
``default`` and ``mirrored``; ``multi_worker``, and ``mirrored`` with gradient accumulation, which Keras 3
cannot run under MirroredStrategy, go to the custom loop `keras_bert3d.training.distributed.custom_fit`). Everything
lands in ``<output_dir>/<name>/``: config.yaml (resolved), class_names.json, backup/ (the resumable training
state), best.keras (best val top-1), last.keras, history.csv (epoch 0-based, as Keras' CSVLogger), logs/
(TensorBoard) and summary.json.

Reproducible: the seed fixes the initial weights, dropout and masking, and each epoch's clip sampling,
augmentation and order (epoch ``e`` is drawn from ``(seed, e)``, whatever happened before). Resumable: run
the same command again after a crash or a kill and training continues at the step of the last backup,
ending with what an uninterrupted run gives.
"""
import dataclasses
import functools
import json
import math
import os


from keras_bert3d.training.config import describe, load_config, save_config, validate_config
from keras_bert3d.training.pipelines import Pipelines, build_indexes, fit as fit_model


# ------------------------------------------------------------------------------------------------ model
def model_preprocessing(model_config):
    """The preprocessing record of the configured model, before building it."""
    if model_config["preset"] is not None:
        from keras_bert3d.models.builder import resolve_preset

        return resolve_preset(model_config["preset"], **model_config["overrides"])[2]["preprocessing"]
    config = model_config["config"]
    config = config.get("config", config) if "class_name" in config else config
    if not config.get("preprocessing"):
        raise ValueError("model.config has no `preprocessing` record; the pipeline needs it")
    return config["preprocessing"]


def build_classifier(model_config, num_classes):
    """A VideoClassifier from ``model.preset`` (+ overrides) or ``model.config``."""
    import keras

    from keras_bert3d.models.builder import build_model
    from keras_bert3d.models.video_classifier import VideoClassifier

    if model_config["preset"] is not None:
        return build_model(model_config["preset"], num_classes, **model_config["overrides"])
    config = dict(model_config["config"])
    if "class_name" in config:
        model = keras.saving.deserialize_keras_object(config)
    else:
        model = VideoClassifier.from_config(config)
    if model.num_classes != num_classes:
        raise ValueError(f"model.config has {model.num_classes} classes; the data has {num_classes}")
    return model


def default_optimizer(model_config):
    """The preset's recipe (``"adamw"`` for BERT models, ``"sgd"`` for the baselines, as the reference);
    for a ``model.config``: adamw with BERT pooling, else sgd."""
    if model_config["preset"] is not None:
        from keras_bert3d.models.builder import get_preset

        return get_preset(model_config["preset"])["optimizer"]
    from keras_bert3d.presets.registry import reference_recipe

    config = model_config["config"]
    config = config.get("config", config) if "class_name" in config else config
    return reference_recipe(config.get("pooling", "bert"))


def load_starting_weights(model, path):
    """``.weights.h5`` / ``.keras`` (Keras) or a reference ``.pth``/``.tar``/``.npz`` (converted on the fly)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model.weights not found: {path}")
    if path.endswith((".weights.h5", ".keras")):
        model.load_weights(path)
        return f"loaded {path}"
    from keras_bert3d.convert.checkpoint import load_reference_weights, read_state_dict

    report = load_reference_weights(model, read_state_dict(path))
    return (f"loaded {len(report.loaded)} reference tensors from {path}; {len(report.missing)} missing (kept as "
            f"initialised), {len(report.unexpected)} unexpected")


# ------------------------------------------------------------------------------------------------ train
def _check_resume(run_dir, config):
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(run_dir, "backup", "state.json")):
        return
    previous = load_config(path)
    for section in ("model", "data"):
        if previous[section] != config[section]:
            raise ValueError(f"{run_dir} holds a backup of a run with a different `{section}` section; resume "
                             f"with the same config, or delete {os.path.join(run_dir, 'backup')} to start over")


def _resolve(config, num_classes):
    """The config as run: the class count, the optimiser and learning rate filled in."""
    from keras_bert3d.models import recipe

    config = validate_config(config)
    config["model"]["num_classes"] = num_classes
    if config["train"]["optimizer"] == "auto":
        config["train"]["optimizer"] = default_optimizer(config["model"])
    optimizer = config["train"]["optimizer"]
    if config["train"]["learning_rate"] is None:
        config["train"]["learning_rate"] = recipe.RECIPES[optimizer]["learning_rate"]
    return config


def train(config):
    """Runs the training that ``config`` (a `load_config` dict) describes and returns the summary dict
    (also written to ``summary.json``): best epoch (0-based) and val top-1, final logs, skipped videos, and
    where the run resumed from (None for a fresh run)."""
    config = validate_config(config)
    tc = config["train"]
    from keras_bert3d.training import distributed  # get_strategy must create a multi-worker strategy before other TF ops

    strategy = distributed.get_strategy(tc["strategy"])
    import keras
    import tensorflow as tf

    run_dir = os.path.join(config["output_dir"], config["name"])
    os.makedirs(run_dir, exist_ok=True)
    previous_policy = keras.config.dtype_policy()
    try:
        if tc["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(tc["seed"])
        if tc["mixed_precision"]:
            keras.config.set_dtype_policy(tc["mixed_precision"])
        if tc["strategy"] == "multi_worker" or (tc["strategy"] == "mirrored" and
                                                 tc["gradient_accumulation_steps"] > 1):
            return _train_custom_loop(config, run_dir, strategy)
        return _train(config, run_dir, strategy)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _indexes(config):
    """The train and validation indexes, and the config with ``model.num_classes`` and the recipe resolved."""
    data = config["data"]
    modality = model_preprocessing(config["model"])["modality"]
    index = build_indexes(data)
    train_index, val_index = index(data["train_subset"], modality), index(data["val_subset"], modality)
    num_classes = config["model"]["num_classes"] or train_index.num_classes
    if num_classes != train_index.num_classes:
        raise ValueError(f"model.num_classes={num_classes} but the training index has {train_index.num_classes} "
                         "classes")
    return train_index, val_index, _resolve(config, num_classes)


def _initial_model(config):
    """The classifier with its starting weights, backbone frozen if asked (call inside the strategy scope)."""
    model = build_classifier(config["model"], config["model"]["num_classes"])
    if config["model"]["weights"]:
        message = load_starting_weights(model, config["model"]["weights"])
        if config["train"]["verbose"]:
            print(message, flush=True)
    if config["model"]["freeze_backbone"]:
        model.backbone.trainable = False
    return model


def _make_optimizer(config, model):
    from keras_bert3d.models import recipe

    tc = config["train"]
    return recipe.make_optimizer(tc["optimizer"], model, tc["learning_rate"], tc["weight_decay"],
                                 tc["decay_norms_and_biases"], tc["gradient_accumulation_steps"], tc["momentum"],
                                 tc["dampening"])


def _write_run_files(run_dir, config, class_names):
    from keras_bert3d.training import callbacks

    _check_resume(run_dir, config)
    save_config(config, os.path.join(run_dir, "config.yaml"))
    callbacks.atomic_write_text(os.path.join(run_dir, "class_names.json"), json.dumps(class_names))


def _train(config, run_dir, strategy):

    from keras_bert3d.data.bad_videos import BadVideoReport
    from keras_bert3d.training import callbacks as cb
    from keras_bert3d.models import recipe

    train_index, val_index, config = _indexes(config)
    data, tc, verbose = config["data"], config["train"], config["train"]["verbose"]
    num_classes = config["model"]["num_classes"]
    with strategy.scope():
        model = _initial_model(config)
        one_hot = bool(data["mixup"] or data["cutmix"])
        model.compile(optimizer=_make_optimizer(config, model), loss=recipe.make_loss(one_hot),
                      metrics=recipe.make_metrics(num_classes, one_hot), jit_compile=tc["jit_compile"])
    _write_run_files(run_dir, config, train_index.class_names)

    steps = tc["steps_per_epoch"] or math.ceil(len(train_index) / data["batch_size"])
    pipes = Pipelines(data, model.preprocessing, train_index, val_index, num_classes, tc["seed"], steps)
    folder = cb.RunFolderCallbacks(run_dir, tc["plateau_patience"], tc["plateau_factor"], verbose=verbose)
    skipped_before = {}
    backup = cb.TrainingBackup(
        os.path.join(run_dir, "backup"), tc["backup_freq"], folder.stateful,
        extra_state=lambda: {"bad_videos": _merge(skipped_before, pipes.counter.counts())},
        steps_per_epoch=steps)
    with strategy.scope():  # the optimiser's variables are created here when a backup is restored
        start_epoch, start_step = backup.restore(model)
    resumed = {"epoch": start_epoch, "step": start_step} if backup.state else None
    if backup.state:
        skipped_before.update(backup.state["extra"].get("bad_videos", {}))
        if verbose:
            print(f"Resuming {run_dir} at epoch {start_epoch + 1}, step {start_step} (of {steps})", flush=True)
    callbacks = [BadVideoReport(pipes.counter, verbose=1 if verbose else 0), *folder.callbacks,
                 cb.EpochAccumulationReset(start_epoch if start_step else None), backup]
    fit = functools.partial(fit_model, model, validation_data=pipes.validation(),
                            validation_steps=tc["validation_steps"], callbacks=callbacks, verbose=verbose,
                            shuffle=False)
    epochs = tc["epochs"]
    if start_step and start_epoch < epochs:  # finish the interrupted epoch, then the rest
        # Keras builds the compiled metrics on first use: one validation batch builds them, so that the
        # backup can put back the running train metrics of the interrupted epoch.
        model.evaluate(pipes.validation().take(1), verbose=0)
        fit(pipes.train_epoch(start_epoch, skip=start_step), initial_epoch=start_epoch, epochs=start_epoch + 1,
            steps_per_epoch=steps - start_step)
        start_epoch += 1
    if start_epoch < epochs:
        fit(pipes.train_epochs(start_epoch, epochs), initial_epoch=start_epoch, epochs=epochs, steps_per_epoch=steps)
    cb.save_model_atomic(model, os.path.join(run_dir, "last.keras"))
    skipped = _merge(skipped_before, pipes.counter.counts())
    return _finish(config, run_dir, {
        "model": model.name, "steps_per_epoch": steps, "num_train_videos": len(train_index),
        "num_val_videos": len(val_index), "best_epoch": folder.best.best_epoch, "best_val_top1": folder.best.best,
        "final": folder.history.rows[-1] if folder.history.rows else None, "skipped_videos": sum(skipped.values()),
        "skipped_by_reason": skipped, "resumed_from": resumed})


def _finish(config, run_dir, summary, write=True):
    from keras_bert3d.training import callbacks

    summary = {"name": config["name"], "run_dir": run_dir, "optimizer": config["train"]["optimizer"],
               "epochs": config["train"]["epochs"], "strategy": config["train"]["strategy"], **summary}
    if write:
        callbacks.atomic_write_text(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=1))
    if write and config["train"]["verbose"]:
        print(f"Done: best val top-1 {_percent(summary['best_val_top1'])} at epoch {_epoch(summary['best_epoch'])}; "
              f"{summary['skipped_videos']} skipped videos; {run_dir}", flush=True)
    return summary


def _train_custom_loop(config, run_dir, strategy):
    """The same recipe through `keras_bert3d.training.distributed.custom_fit`, where Keras 3's model.fit cannot run it:
    ``multi_worker`` (model.fit fails under MultiWorkerMirroredStrategy, keras-team/keras#20585) and
    ``mirrored`` with gradient accumulation (Keras' optimizer accumulates inside a cond, where
    MirroredStrategy's merge_call is not allowed). Each input pipeline reads its own slice of the videos."""
    from keras_bert3d.models import recipe
    from keras_bert3d.training import distributed

    train_index, val_index, config = _indexes(config)
    data, tc = config["data"], config["train"]
    chief = distributed.worker_info(strategy)[2]
    if chief:
        _write_run_files(run_dir, config, train_index.class_names)
        if tc["verbose"]:
            print(f"strategy={tc['strategy']} with {strategy.num_replicas_in_sync} replica(s): training with the "
                  "custom loop of keras_bert3d.training.distributed", flush=True)
    steps = tc["steps_per_epoch"] or math.ceil(len(train_index) / data["batch_size"])
    pipes = Pipelines(data, None, train_index, val_index, config["model"]["num_classes"], tc["seed"], steps)
    built = {}

    def model_fn():
        built["model"] = _initial_model(config)
        pipes.prep = built["model"].preprocessing
        return built["model"]

    def shard(index, context):
        records = list(index)[context.input_pipeline_id::context.num_input_pipelines]
        return dataclasses.replace(index, records=records)

    def train_ds_fn(context, epoch):
        batch = context.get_per_replica_batch_size(data["batch_size"])
        return pipes.train_epoch(epoch, batch_size=batch, index=shard(train_index, context))

    def val_ds_fn(context, epoch):
        batch = context.get_per_replica_batch_size(data["batch_size"])
        return pipes.validation(batch_size=batch, index=shard(val_index, context))

    accumulation = max(tc["gradient_accumulation_steps"], 1)
    backup_every = None if tc["backup_freq"] == "epoch" else max(1, tc["backup_freq"] // accumulation)
    result = distributed.custom_fit(
        model_fn, lambda: _make_optimizer(config, built["model"]), recipe.make_loss(bool(data["mixup"] or
                                                                                          data["cutmix"])),
        train_ds_fn, val_ds_fn, epochs=tc["epochs"], run_dir=run_dir, strategy=strategy,
        global_batch_size=data["batch_size"], steps_per_epoch=steps, validation_steps=tc["validation_steps"],
        checkpoint_every_steps=backup_every, plateau_patience=tc["plateau_patience"],
        plateau_factor=tc["plateau_factor"], jit_compile=tc["jit_compile"], verbose=tc["verbose"])
    return _finish(config, run_dir, {
        "model": built["model"].name, "steps_per_epoch": steps, "num_train_videos": len(train_index),
        "num_val_videos": len(val_index), "best_epoch": result["best_epoch"],
        "best_val_top1": result["best_val_top1"], "final": result["history"][-1] if result["history"] else None,
        "skipped_videos": result["bad_videos"], "skipped_by_reason": None, "resumed_from": result["resumed_from"],
        "global_step": result["global_step"]}, write=chief)


def _merge(a, b):
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _epoch(value):
    return "n/a" if value is None else value + 1


# ------------------------------------------------------------------------------------------------ CLI
