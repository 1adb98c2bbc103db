"""One worker of tests/training/test_multi_worker.py (a subprocess with TF_CONFIG in its environment).

Trains a tiny Keras model (Conv3D, BatchNormalization, Dropout, Dense) with `training.distributed.custom_fit`
under MultiWorkerMirroredStrategy on synthetic clips, in ``<root>/<run>/`` for each of ``--runs``, and saves
its final weights to ``weights_worker<k>.npz`` and the summary to ``summary_worker<k>.json`` there.
``--snapshot STEP:NAME``: right after update STEP (and its checkpoint), the chief copies ``backup/`` and
``history.csv`` to ``<root>/<NAME>/``, the state a run killed at that moment leaves behind; a later run NAME
resumes from it.
``--cli``: run through the `bert3d train` command (keras_bert3d.cli.main, with a config naming ``<root>/a``),
its `train` replaced by this tiny training, so that what the command prints and returns is what a user sees.
``--die-at STEP``: worker 1 kills itself (SIGKILL) right after update STEP (and its checkpoint).
"""
import argparse
import json
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from keras_bert3d.training.distributed import custom_fit  # noqa: E402
from keras_bert3d.training.strategies import get_strategy  # noqa: E402

NUM_CLASSES = 3
GLOBAL_BATCH = 4  # 2 per worker
ACCUMULATION = 2  # an update every 2 batches
CLIP = (4, 8, 8, 3)  # frames, height, width, channels
NUM_TRAIN = 21  # worker 0: 11 clips (6 batches); worker 1: 10 clips (5 batches, then an empty one)


def tiny_model(seed=True):
    """The tiny classifier; ``seed``: fix the global seeds first (in the worker process only)."""
    import keras

    if seed:
        keras.utils.set_random_seed(0)
    inputs = keras.Input(CLIP)
    x = keras.layers.Conv3D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    x = keras.layers.Dropout(0.3, seed=1, name="dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(x))


def synthetic(count, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count).astype("int32")
    clips = rng.normal(size=(count,) + CLIP).astype("float32") + labels[:, None, None, None, None]
    return clips, labels


def dataset_fn(arrays, shuffle, global_batch=GLOBAL_BATCH):
    """``(input_context, epoch) -> dataset``: this worker's shard, reshuffled per epoch, per-replica batches."""
    import tensorflow as tf

    def make(context, epoch):
        dataset = tf.data.Dataset.from_tensor_slices(arrays)
        dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        if shuffle:
            dataset = dataset.shuffle(64, seed=epoch, reshuffle_each_iteration=False)
        return dataset.batch(context.get_per_replica_batch_size(global_batch))

    return make


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--runs", default="a", help="comma-separated run names, trained one after the other")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--snapshot", default=None, help="STEP:NAME")
    parser.add_argument("--cli", action="store_true", help="run through `bert3d train` (run 'a' only)")
    parser.add_argument("--die-at", type=int, default=None, help="worker 1 SIGKILLs itself after this update")
    args = parser.parse_args()
    if args.cli:
        sys.exit(through_cli(args))
    strategy = get_strategy("multi_worker")  # first: before any other TensorFlow op
    for run in args.runs.split(","):
        train(strategy, os.path.join(args.root, run), args)


def through_cli(args):
    """``bert3d train <root>/worker<k>.yaml`` with `keras_bert3d.training.train.train` replaced by `train`
    (the strategy created first, as the library's `train` does); returns the command's exit code."""
    import yaml

    from keras_bert3d import cli
    from keras_bert3d.training import train as training

    def tiny_train(config):
        strategy = get_strategy(config["train"]["strategy"])
        train(strategy, os.path.join(config["output_dir"], config["name"]), args)

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    path = os.path.join(args.root, f"worker{task}.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump({"name": "a", "output_dir": args.root, "model": {"preset": "rgb_r2plus1d_32f_34_bert10"},
                        "data": {"dataset": "ucf101", "root": args.root}, "train": {"strategy": "multi_worker"}},
                       handle)  # a valid config; only the strategy, output_dir and name are read
    training.train = tiny_train
    return cli.main(["train", path])


def train(strategy, run_dir, args):
    """One `custom_fit` call: a new model, optimizer and loop; only the files in ``run_dir`` carry over."""
    import keras
    import numpy as np

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    built = []

    def model_fn():
        built.append(tiny_model())
        return built[-1]

    def snapshot(step, logs):
        if args.snapshot and step == int(args.snapshot.split(":")[0]) and task == 0:
            target = os.path.join(args.root, args.snapshot.split(":")[1])
            if not os.path.exists(target):
                shutil.copytree(os.path.join(run_dir, "backup"), os.path.join(target, "backup"))
                shutil.copy(os.path.join(run_dir, "history.csv"), target)
        if step == args.die_at and task == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    summary = custom_fit(
        model_fn, lambda: keras.optimizers.AdamW(1e-2, weight_decay=1e-3), None,
        dataset_fn(synthetic(NUM_TRAIN, seed=1), True), dataset_fn(synthetic(7, seed=2), False),
        epochs=args.epochs, run_dir=run_dir, strategy=strategy, global_batch_size=GLOBAL_BATCH,
        gradient_accumulation_steps=ACCUMULATION, checkpoint_every_steps=1, step_end_fns=[snapshot])
    np.savez(os.path.join(run_dir, f"weights_worker{task}.npz"), *built[-1].get_weights())
    with open(os.path.join(run_dir, f"summary_worker{task}.json"), "w") as handle:
        json.dump(summary, handle)


if __name__ == "__main__":
    main()
