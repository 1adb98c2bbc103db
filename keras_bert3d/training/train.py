"""Train a keras_bert3d model with the reference recipe: ``bert3d train CONFIG [key=value ...]``.

`train(config)` builds the model (a preset or a VideoClassifier config, optionally starting from converted
weights, a .keras file or a reference .pth/.npz; keras_bert3d.training.model_setup), the tf.data pipelines of
the train and validation subsets (keras_bert3d.training.pipelines), and runs ``model.fit`` with the callbacks
of keras_bert3d.training.callbacks and the backup of keras_bert3d.training.backup (strategies ``default`` and
``mirrored``; ``multi_worker``, and ``mirrored`` with gradient accumulation, which Keras 3 cannot run under
MirroredStrategy, go to the custom loop `keras_bert3d.training.distributed.custom_fit`). Everything lands in
``<output_dir>/<name>/`` (keras_bert3d.training.run_folder), which a lock holds while the run trains
(keras_bert3d.training.run_lock): config.yaml (resolved), class_names.json, backup/
(the resumable training state), best.keras (best val top-1), last.keras, history.csv (epoch 0-based, as Keras'
CSVLogger), logs/ (TensorBoard) and summary.json.

Reproducible: the seed fixes the initial weights, dropout and masking, and each epoch's clip sampling,
augmentation and order (epoch ``e`` is drawn from ``(seed, e)``, whatever happened before). Resumable: run
the same command again after a crash or a kill and training continues at the step of the last backup,
ending with what an uninterrupted run gives. Messages go to the ``keras_bert3d.training`` logger (the
command line shows them).
"""
import contextlib
import dataclasses
import functools
import logging
import math
import os

from keras_bert3d.atomic import save_model_atomic
from keras_bert3d.training import model_setup, run_folder
from keras_bert3d.training.config import validate_config
from keras_bert3d.training.pipelines import Pipelines, fit as fit_model
from keras_bert3d.training.run_lock import RunLock

log = logging.getLogger(__name__)


def train(config):
    """Runs the training that ``config`` (a `load_config` dict) describes and returns the summary dict
    (also written to ``summary.json``): best epoch (0-based) and val top-1, final logs, skipped videos, and
    where the run resumed from (None for a fresh run)."""
    config = validate_config(config)
    tc = config["train"]
    from keras_bert3d.training import strategies  # get_strategy must create a multi-worker strategy before other TF ops

    strategy = strategies.get_strategy(tc["strategy"])
    import keras
    import tensorflow as tf

    run_dir = os.path.join(config["output_dir"], config["name"])
    os.makedirs(run_dir, exist_ok=True)
    chief = strategies.worker_info(strategy)[2]  # holds the run folder's lock (every worker shares the folder)
    with RunLock(run_dir) if chief else contextlib.nullcontext(), model_setup.precision(tc["mixed_precision"]):
        if tc["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(tc["seed"])
        if tc["strategy"] == "multi_worker" or (tc["strategy"] == "mirrored" and
                                                 tc["gradient_accumulation_steps"] > 1):
            with strategies.lost_workers_reported(strategy, run_dir):  # a lost peer: WorkerLostError
                return _train_custom_loop(config, run_dir, strategy)
        return _train(config, run_dir, strategy)


def _resolved(config):
    """The train and validation indexes, and the config with ``model.num_classes``, ``data.augment`` and the
    recipe resolved."""
    train_index, val_index, num_classes = model_setup.load_indexes(config)
    return train_index, val_index, model_setup.resolve_recipe(config, num_classes)


def _train(config, run_dir, strategy):
    from keras_bert3d.training.bad_video_report import BadVideoReport
    from keras_bert3d.training import callbacks as cb
    from keras_bert3d.models.clip_augmenter import augmented_model
    from keras_bert3d.training.backup import TrainingBackup

    train_index, val_index, config = _resolved(config)
    data, tc, verbose = config["data"], config["train"], config["train"]["verbose"]
    num_classes = config["model"]["num_classes"]
    with strategy.scope():
        model = model_setup.initial_model(config["model"], num_classes, verbose)
        # data.augment=device: fit trains the classifier behind a ClipAugmenter (shared weights); the run folder,
        # backups and exports keep the classifier (`unwrap`)
        trainer = augmented_model(model) if data["augment"] == "device" else model
        model_setup.compile_model(trainer, tc, num_classes, one_hot=bool(data["mixup"] or data["cutmix"]))
    _write_run_files(run_dir, config, train_index.class_names)
    if verbose and data["augment"] == "device":
        log.info("data.augment=device: uint8 frames and crop windows go to the accelerator, which crops, flips and "
                 "normalises them (keras_bert3d.models.clip_augmenter)")

    steps = tc["steps_per_epoch"] or math.ceil(len(train_index) / data["batch_size"])
    pipes = Pipelines(data, model.preprocessing, train_index, val_index, num_classes, tc["seed"], steps,
                      augment=data["augment"])
    folder = cb.RunFolderCallbacks(run_dir, tc["plateau_patience"], tc["plateau_factor"], verbose=verbose)
    skipped_before = {}
    backup = TrainingBackup(
        os.path.join(run_dir, run_folder.BACKUP), tc["backup_freq"], folder.stateful,
        extra_state=lambda: {"bad_videos": _merge(skipped_before, pipes.counter.counts())},
        steps_per_epoch=steps)
    with strategy.scope():  # the optimiser's variables are created here when a backup is restored
        start_epoch, start_step = backup.restore(trainer)
    resumed = {"epoch": start_epoch, "step": start_step} if backup.state else None
    if backup.state:
        skipped_before.update(backup.state["extra"].get("bad_videos", {}))
        if verbose:
            log.info(f"Resuming {run_dir} at epoch {start_epoch + 1}, step {start_step} (of {steps})")
    callbacks = [BadVideoReport(pipes.counter, verbose=1 if verbose else 0), *folder.callbacks,
                 cb.EpochAccumulationReset(start_epoch if start_step else None), backup]
    fit = functools.partial(fit_model, trainer, validation_data=pipes.validation(),
                            validation_steps=tc["validation_steps"], callbacks=callbacks, verbose=verbose,
                            shuffle=False)
    epochs = tc["epochs"]
    if start_step and start_epoch < epochs:  # finish the interrupted epoch, then the rest
        # Keras builds the compiled metrics on first use: one validation batch builds them, so that the
        # backup can put back the running train metrics of the interrupted epoch.
        trainer.evaluate(pipes.validation().take(1), verbose=0)
        fit(pipes.train_epoch(start_epoch, skip=start_step), initial_epoch=start_epoch, epochs=start_epoch + 1,
            steps_per_epoch=steps - start_step)
        start_epoch += 1
    if start_epoch < epochs:
        fit(pipes.train_epochs(start_epoch, epochs), initial_epoch=start_epoch, epochs=epochs, steps_per_epoch=steps)
    save_model_atomic(model, os.path.join(run_dir, run_folder.LAST))
    skipped = _merge(skipped_before, pipes.counter.counts())
    return _finish(config, run_dir, {
        "model": model.name, "steps_per_epoch": steps, "num_train_videos": len(train_index),
        "num_val_videos": len(val_index), "best_epoch": folder.best.best_epoch, "best_val_top1": folder.best.best,
        "final": folder.history.rows[-1] if folder.history.rows else None, "skipped_videos": sum(skipped.values()),
        "skipped_by_reason": skipped, "resumed_from": resumed})


def _finish(config, run_dir, summary, write=True):
    summary = {"name": config["name"], "run_dir": run_dir, "optimizer": config["train"]["optimizer"],
               "epochs": config["train"]["epochs"], "strategy": config["train"]["strategy"], **summary}
    if write:
        run_folder.write_summary(run_dir, summary)
    if write and config["train"]["verbose"]:
        log.info(f"Done: best val top-1 {_percent(summary['best_val_top1'])} at epoch "
                 f"{_epoch(summary['best_epoch'])}; {summary['skipped_videos']} skipped videos; {run_dir}")
    return summary


def _train_custom_loop(config, run_dir, strategy):
    """The same recipe through `keras_bert3d.training.distributed.custom_fit`, where Keras 3's model.fit cannot run it:
    ``multi_worker`` (model.fit fails under MultiWorkerMirroredStrategy, keras-team/keras#20585) and
    ``mirrored`` with gradient accumulation (Keras' optimizer accumulates inside a cond, where
    MirroredStrategy's merge_call is not allowed). Each input pipeline reads its own slice of the videos."""
    from keras_bert3d.models import recipe
    from keras_bert3d.training import distributed, strategies

    from keras_bert3d.models.clip_augmenter import augmented_model

    train_index, val_index, config = _resolved(config)
    data, tc = config["data"], config["train"]
    chief = strategies.worker_info(strategy)[2]
    if chief:
        _write_run_files(run_dir, config, train_index.class_names)
        if tc["verbose"]:
            log.info(f"strategy={tc['strategy']} with {strategy.num_replicas_in_sync} replica(s): training with the "
                     "custom loop of keras_bert3d.training.distributed")
    with strategy.scope():
        model = model_setup.initial_model(config["model"], config["model"]["num_classes"], tc["verbose"])
        trainer = augmented_model(model) if data["augment"] == "device" else model  # as in _train
        optimizer = model_setup.make_optimizer(model, tc)
    steps = tc["steps_per_epoch"] or math.ceil(len(train_index) / data["batch_size"])
    pipes = Pipelines(data, model.preprocessing, train_index, val_index, config["model"]["num_classes"],
                      tc["seed"], steps, augment=data["augment"])

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
        lambda: trainer, lambda: optimizer, recipe.make_loss(bool(data["mixup"] or data["cutmix"])),
        train_ds_fn, val_ds_fn, epochs=tc["epochs"], run_dir=run_dir, strategy=strategy,
        global_batch_size=data["batch_size"], steps_per_epoch=steps, validation_steps=tc["validation_steps"],
        checkpoint_every_steps=backup_every, plateau_patience=tc["plateau_patience"],
        plateau_factor=tc["plateau_factor"], jit_compile=tc["jit_compile"], counter=pipes.counter,
        verbose=tc["verbose"])
    return _finish(config, run_dir, {
        "model": model.name, "steps_per_epoch": steps, "num_train_videos": len(train_index),
        "num_val_videos": len(val_index), "best_epoch": result["best_epoch"],
        "best_val_top1": result["best_val_top1"], "final": result["history"][-1] if result["history"] else None,
        "skipped_videos": result["bad_videos"], "skipped_by_reason": None, "resumed_from": result["resumed_from"],
        "global_step": result["global_step"]}, write=chief)


def _write_run_files(run_dir, config, class_names):
    for path in run_folder.write_run_files(run_dir, config, class_names):
        log.warning(f"{run_dir} starts over (no backup): the model of the run before is kept as {path}")


def _merge(a, b):
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _epoch(value):
    return "n/a" if value is None else value + 1
