"""Distribution strategies and the custom training loop used under `MultiWorkerMirroredStrategy`.

Keras 3 ``model.fit`` does not run under ``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585),
so ``strategy: multi_worker`` trains with `custom_fit`, a loop written on ``strategy.run`` (its per-replica
steps and synchronised dataset passes are in keras_bert3d.training.replica_steps):

    strategy = get_strategy("multi_worker")          # FIRST, before any other TensorFlow op (training.strategies)
    summary = custom_fit(
        model_fn,                 # () -> built keras.Model with logits output; called inside strategy.scope()
        optimizer_fn,             # () -> keras.optimizers.Optimizer; called inside strategy.scope()
        loss_fn,                  # None (cross-entropy from logits) | keras.losses.Loss | fn(y, logits) -> (B,)
        train_ds_fn,              # (input_context, epoch) -> tf.data.Dataset of (x, y) per-replica batches
        val_ds_fn=None,           # same signature, or None (no validation, best = lowest train loss)
        *, epochs, run_dir, strategy=None, global_batch_size,
        steps_per_epoch=None, validation_steps=None, gradient_accumulation_steps=None,
        checkpoint_every_steps=None, max_checkpoints=2,
        plateau_patience=None, plateau_factor=0.1, plateau_threshold=1e-4, min_lr=0.0,
        jit_compile=False, step_end_fns=(), epoch_end_fns=(), counter=None, verbose=1,
    ) -> {"history": [row, ...], "best_epoch": int|None, "best_val_top1": float|None, "epochs_run": int,
          "global_step": int, "resumed_from": {"epoch": e, "step_in_epoch": s, "global_step": g}|None,
          "bad_videos": int, "is_chief": bool}

Datasets. ``train_ds_fn(input_context, epoch)`` gives this worker's share of the data, batched with
``input_context.get_per_replica_batch_size(global_batch_size)`` and sharded with
``dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)`` (or by slicing the video
index, which avoids decoding other workers' videos). Seed its shuffling with ``epoch`` so that a resumed epoch
sees the same order (the loop skips the batches already consumed). Workers may hold unequal shares: the loop
stops an epoch when every worker is exhausted, and a worker that ran out first trains on an empty batch.
``counter`` (the `BadVideoCounter` the datasets count their skipped videos into, anything with a ``total``),
when given, gives the skipped videos of each pass, summed into the progress line.

Steps. ``steps_per_epoch``/``validation_steps`` count batches (as ``model.fit`` does); an optimizer update
happens every ``gradient_accumulation_steps`` batches (default: the optimizer's own
``gradient_accumulation_steps``, which the loop takes over, else 1). Each batch's loss is the mean over the
GLOBAL batch (all replicas, the actual number of examples) divided by the accumulation steps, so an update
averages ``global_batch_size * accumulation`` examples, as the reference's ``loss / iter_size``. A partial
accumulation at the end of an epoch is dropped (the reference zeroes its gradients at each epoch start).

Outputs in ``run_dir``: the run folder of `model.fit`, kept by the same callbacks
(`keras_bert3d.training.callbacks.RunFolderCallbacks`: TensorBoard ``logs/``, ``history.csv``, the plateau rule,
``best.keras``) driven through ``keras.callbacks.CallbackList``, plus ``last.keras`` and ``backup/``. The chief
writes them; the other workers keep only the plateau rule (every worker applies it alike) and write their
checkpoints to a temporary folder that is removed right after, as TensorFlow's multi-worker guide requires.
``backup/`` is a tf.train.CheckpointManager of model, optimizer, counters, partial-epoch metrics and the
callbacks' states (JSON), saved every ``checkpoint_every_steps`` updates and at each epoch end as ``ckpt-<n>``
(``n`` counts the saves, so no number repeats; the files are fsynced after each save) (under
MultiWorkerMirroredStrategy every worker takes part in a save, which `TrainingBackup`'s single-process
``.weights.h5`` writes cannot); the next call with the same ``run_dir`` resumes from the latest.
``callbacks``: more Keras callbacks, driven with those (epoch and batch events; no test/predict events).

Learning rate: ``plateau_patience`` (None: off) enables the reference's ReduceLROnPlateau (torch semantics,
`ReferenceReduceLROnPlateau`) on the validation loss (the train loss without validation); model selection is
the best validation top-1 (``>=`` as the reference; without validation the lowest train loss).

Replica-local state (BatchNorm moving statistics and SeedGenerator states, which each replica updates on its
own) is synchronised before validation and before every checkpoint: float variables are averaged over the
replicas, int ones take the chief's value. So every worker ends with identical weights, and the chief's
checkpoint is every worker's state: resuming gives the numbers of an uninterrupted run. All workers restore
from ``run_dir/backup``: it must be on a file system they share (checked; a clear error otherwise).

Hooks: ``step_end_fns``, callables ``(global_step, logs)`` after each update, and ``epoch_end_fns``,
``(epoch, logs)`` after each epoch, run on every worker (raising on one worker only leaves the others waiting
in a collective: raise on all). The returned ``history`` is empty on non-chief workers.

A lost worker: when a peer dies (killed, crashed, its host down), every other worker raises
`keras_bert3d.training.strategies.WorkerLostError` within seconds (TensorFlow's heartbeats), one line naming
the peer by its TF_CONFIG address and task index; starting all the workers again with the same command
resumes from ``backup/``.
"""
import json
import logging
import os
import time

import keras
import tensorflow as tf

from keras_bert3d.atomic import fsync_file, fsync_folder, save_model_atomic
from keras_bert3d.models.clip_augmenter import unwrap
from keras_bert3d.training import run_folder
from keras_bert3d.training.callbacks import RunFolderCallbacks
from keras_bert3d.training.replica_steps import EpochBatches, ReplicaSteps
from keras_bert3d.training.strategies import reports_lost_workers, worker_info
from keras_bert3d.validation import check_int_at_least, check_open_unit

log = logging.getLogger(__name__)


@reports_lost_workers
def custom_fit(model_fn, optimizer_fn, loss_fn, train_ds_fn, val_ds_fn=None, *, epochs, run_dir, strategy=None,
               global_batch_size, steps_per_epoch=None, validation_steps=None, gradient_accumulation_steps=None,
               checkpoint_every_steps=None, max_checkpoints=2, plateau_patience=None, plateau_factor=0.1,
               plateau_threshold=1e-4, min_lr=0.0, jit_compile=False, step_end_fns=(),
               epoch_end_fns=(), callbacks=(), counter=None, verbose=1):
    """Trains ``model_fn()`` under ``strategy`` with resume, best-model selection and logs (module docstring)."""
    for name, value in dict(global_batch_size=global_batch_size, steps_per_epoch=steps_per_epoch,
                            validation_steps=validation_steps, gradient_accumulation_steps=gradient_accumulation_steps,
                            checkpoint_every_steps=checkpoint_every_steps, max_checkpoints=max_checkpoints).items():
        check_int_at_least(name, value, 1)
    check_int_at_least("epochs", epochs, 0)
    check_int_at_least("plateau_patience", plateau_patience, 0)
    check_open_unit("plateau_factor", plateau_factor)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(f"global_batch_size must be a multiple of the {replicas} replicas in sync; "
                         f"received global_batch_size={global_batch_size}")
    task_type, task_id, chief = worker_info(strategy)
    with strategy.scope():
        model, optimizer = model_fn(), optimizer_fn()
        if not model.built:
            raise ValueError("model_fn must return a built model (give its Input shape)")
        inner = getattr(optimizer, "inner_optimizer", None)  # a LossScaleOptimizer's
        optimizers = [optimizer] if inner is None else [optimizer, inner]
        own = max(getattr(opt, "gradient_accumulation_steps", None) or 0 for opt in optimizers)
        if own and gradient_accumulation_steps and own != gradient_accumulation_steps:
            raise ValueError(f"the optimizer accumulates {own} steps but gradient_accumulation_steps="
                             f"{gradient_accumulation_steps}; set one of them")
        accumulation = gradient_accumulation_steps or own or 1
        for opt in optimizers:  # the loop accumulates (the optimizer's own accumulation fails under a strategy)
            opt.gradient_accumulation_steps = None
        optimizer.build(model.trainable_variables)
    schedule = getattr(optimizers[-1], "_learning_rate", None)
    if plateau_patience is not None and isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        raise ValueError("plateau_patience needs a float learning rate, not a LearningRateSchedule")
    loop = ReplicaSteps(strategy, model, optimizer, loss_fn, accumulation, jit_compile)
    model.optimizer = optimizer  # what the callbacks read the learning rate from (as after compile)
    # The run folder is kept by the callbacks model.fit uses (the chief writes; every worker applies the plateau
    # rule), driven through Keras' CallbackList; their states travel in the backup as JSON.
    folder = RunFolderCallbacks(
        run_dir, plateau_patience, plateau_factor, plateau_threshold, min_lr,
        plateau_monitor="val_loss" if val_ds_fn is not None else "loss",
        best_monitor="val_top1" if val_ds_fn is not None else "loss",
        best_mode="max" if val_ds_fn is not None else "min", write=chief, verbose=verbose)
    callback_list = keras.callbacks.CallbackList([*folder.callbacks, *callbacks], model=model)

    state = {name: tf.Variable(value, dtype=dtype, trainable=False, name=name) for name, value, dtype in (
        ("epoch", 0, tf.int64), ("step_in_epoch", 0, tf.int64), ("global_step", 0, tf.int64),
        ("train_sums", [0.0, 0.0, 0.0], tf.float64), ("callback_states", "{}", tf.string))}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, rng_states=loop.rng_states, **state)
    backup_dir = os.path.join(run_dir, run_folder.BACKUP)
    write_dir = backup_dir if chief else os.path.join(run_dir, run_folder.worker_temp(task_type, task_id),
                                                      run_folder.BACKUP)
    manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=max_checkpoints)
    resumed, latest = None, restore_newest_readable(checkpoint, backup_dir)
    if latest:
        resumed = {k: int(state[k].numpy()) for k in ("epoch", "step_in_epoch", "global_step")}
        saved = json.loads(state["callback_states"].numpy().decode())
        for name, callback in folder.stateful.items():
            if name in saved:
                callback.set_state(saved[name])
    positions = loop.gather(float(state["epoch"].numpy()), float(state["step_in_epoch"].numpy()))
    if (positions != positions[0]).any():
        raise RuntimeError(f"the workers restored different (epoch, batch) positions {positions.tolist()}: every "
                           f"worker must see the chief's {backup_dir} (a shared file system)")

    def save_checkpoint(sync=True):
        if sync:
            loop.sync()
        state["callback_states"].assign(json.dumps({k: cb.get_state() for k, cb in folder.stateful.items()}))
        # Numbered by the checkpoint's own save counter (restored with it), never by the update count: the last
        # update of an epoch is saved twice (after the update, then at the epoch end) and each save needs its own
        # files (a second save under the same number rewrote the files `checkpoint` pointed to).
        path = manager.save()
        if chief:
            _fsync_checkpoint(path)
        else:
            tf.io.gfile.rmtree(os.path.dirname(write_dir))

    total_bad = 0
    if resumed and chief and verbose:
        print(f"custom_fit: resumed from {latest} (epoch {resumed['epoch']}, batch {resumed['step_in_epoch']}, "
              f"update {resumed['global_step']})", flush=True)

    callback_list.on_train_begin()
    for epoch in range(int(state["epoch"].numpy()), epochs):
        start, skip = time.time(), int(state["step_in_epoch"].numpy())
        sums = [float(v) for v in state["train_sums"].numpy()]
        batches = skip
        passes = [EpochBatches(strategy, train_ds_fn, epoch, skip, steps_per_epoch, counter)]
        callback_list.on_epoch_begin(epoch)
        for batch in passes[0]:
            callback_list.on_train_batch_begin(batches)
            batches += 1
            apply = batches % accumulation == 0
            sums = [a + float(b) for a, b in zip(sums, loop.train_steps[apply](batch).numpy().tolist())]
            callback_list.on_train_batch_end(batches - 1)
            if not apply:
                continue
            state["global_step"].assign_add(1)
            state["step_in_epoch"].assign(batches)
            state["train_sums"].assign(sums)
            step = int(state["global_step"].numpy())
            if checkpoint_every_steps and step % checkpoint_every_steps == 0:
                save_checkpoint()
            for fn in step_end_fns:
                fn(step, {"epoch": epoch, "batch": batches, "loss": sums[0] / max(sums[2], 1.0)})
        if accumulation > 1:
            loop.reset()  # drop a partial accumulation
        loop.sync()
        logs = {"loss": sums[0] / max(sums[2], 1.0), "top1": sums[1] / max(sums[2], 1.0)}
        if val_ds_fn is not None:
            val = [0.0, 0.0, 0.0]
            passes.append(EpochBatches(strategy, val_ds_fn, epoch, 0, validation_steps, counter))
            for batch in passes[-1]:
                val = [a + float(b) for a, b in zip(val, loop.val_step(batch).numpy().tolist())]
            logs.update(val_loss=val[0] / max(val[2], 1.0), val_top1=val[1] / max(val[2], 1.0))
        # Each replica reports its worker's count: sum over the cluster / replicas per worker.
        bad = int(round(loop.gather(float(sum(p.bad_videos for p in passes)))[:, 0].sum() / loop.local_replicas))
        logs["bad_videos"] = bad
        total_bad += bad
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))  # before the plateau rule's change
        # history.csv, the plateau rule, best.keras (best val top-1, >= as the reference; without validation the
        # lowest train loss) and TensorBoard, as under model.fit.
        callback_list.on_epoch_end(epoch, dict(logs))
        is_best = folder.best is not None and folder.best.best_epoch == epoch
        state["epoch"].assign(epoch + 1)
        state["step_in_epoch"].assign(0)
        state["train_sums"].assign([0.0, 0.0, 0.0])
        save_checkpoint(sync=False)  # synchronised above
        if chief and verbose:
            text = " - ".join(f"{k}: {logs[k]:.4f}" for k in ("loss", "top1", "val_loss", "val_top1") if k in logs)
            print(f"Epoch {epoch + 1}/{epochs} - {batches} batches, {int(state['global_step'].numpy())} updates - "
                  f"{time.time() - start:.1f}s - {text} - lr: {rate:.3g} - skipped videos: {bad}"
                  + (" - best" if is_best else ""), flush=True)
        for fn in epoch_end_fns:
            fn(epoch, dict(logs, learning_rate=rate))
    callback_list.on_train_end()
    if chief:
        save_model_atomic(unwrap(model), os.path.join(run_dir, run_folder.LAST))  # the classifier, not a wrapper
    best = folder.best
    return {"history": [dict(row) for row in folder.history.rows] if chief else [],
            "best_epoch": best.best_epoch if best else None,
            "best_val_top1": best.best if best and val_ds_fn is not None else None,
            "epochs_run": int(state["epoch"].numpy()), "global_step": int(state["global_step"].numpy()),
            "resumed_from": resumed, "bad_videos": total_bad, "is_chief": chief}


def _checkpoint_prefixes(backup_dir):
    """The checkpoint prefixes in ``backup_dir``, newest first: those the ``checkpoint`` index lists, else (an
    unreadable index) every ``ckpt-<n>.index`` found, by number."""
    try:
        listed = tf.train.get_checkpoint_state(backup_dir)
    except (tf.errors.OpError, ValueError):  # a torn or empty index (text proto)
        listed = None
    if listed is not None and listed.all_model_checkpoint_paths:
        paths = [p if os.path.isabs(p) else os.path.join(backup_dir, p) for p in listed.all_model_checkpoint_paths]
        return paths[::-1]
    if not os.path.isdir(backup_dir):
        return []
    numbers = sorted((int(name[5:-6]) for name in os.listdir(backup_dir)
                      if name.startswith("ckpt-") and name.endswith(".index") and name[5:-6].isdigit()), reverse=True)
    return [os.path.join(backup_dir, f"ckpt-{n}") for n in numbers]


def restore_newest_readable(checkpoint, backup_dir):
    """Restores the newest checkpoint of ``backup_dir`` that reads whole and returns its prefix (None: none).

    TensorFlow writes a checkpoint's files, renames its ``checkpoint`` index, and only then can they be
    fsynced (`_fsync_checkpoint`): a power loss in between can leave the newest one torn. Then the one before it
    (the manager keeps ``max_checkpoints``) is restored instead, with a warning naming both; every worker reads
    the same shared folder, so all fall back alike."""
    failed = []
    for prefix in _checkpoint_prefixes(backup_dir):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as err:
            failed.append(f"{prefix} ({type(err).__name__})")
            continue
        if failed:
            log.warning("the newest backup could not be read: %s; resumed from %s instead", "; ".join(failed), prefix)
        return prefix
    if failed:
        raise ValueError(f"no backup in {backup_dir} can be read: {'; '.join(failed)}. Move {backup_dir} away to "
                         "start over")
    return None


def _fsync_checkpoint(prefix):
    """Flushes the files of the checkpoint ``prefix`` (``.index``, ``.data-*``), the ``checkpoint`` index and
    their folder to disk (local folders; TensorFlow's other file systems keep their own rules)."""
    folder, base = os.path.split(prefix)
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(f"{base}.") or name == run_folder.BACKUP_CHECKPOINT:
            fsync_file(os.path.join(folder, name))
    fsync_folder(folder)
