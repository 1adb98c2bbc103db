"""Host-side cost of the train/val transform per clip, ``augment="host"`` against ``augment="device"``, on one
core, and the bytes per clip each hands to the accelerator (issue 20, item 2).

    python bench/bench_augment.py            # both preset sizes, ~30 s
    python bench/bench_augment.py --rounds 5

The host path crops, resizes, flips and normalises to float32 (`keras_bert3d.data.pipeline._transform`); the
device path only draws the window and cuts the uint8 box (`_device_clip`), leaving the rest to
`keras_bert3d.models.clip_augmenter.ClipAugmenter` on the accelerator. Both run on the same decoded frames
(random uint8 at the preset's frame size; decoding is not timed), alternately, one thread, batch 4; the
ratio is what counts (a busy machine slows both).
"""
import argparse
import json
import time

import numpy as np
import tensorflow as tf

from keras_bert3d.data.pipeline import _transform

SIZES = {"32x112": (32, [128, 171], 112), "64x224": (64, [256, 340], 224)}  # (T, frame_size, crop_size)
BATCH = 4


def _iterator(frames, prep, mode, augment):
    dataset = tf.data.Dataset.range(1 << 30).map(
        lambda seed: _transform(frames, seed, mode, prep, None, 1, augment), num_parallel_calls=1).batch(BATCH)
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    return iter(dataset.with_options(options))


def _bytes(element):
    """Bytes per clip of a batch (the batch axis left out)."""
    return sum(int(np.prod(s.shape[1:])) * s.dtype.size for s in tf.nest.flatten(element))


def measure(name, mode, rounds, batches):
    length, frame_size, size = SIZES[name]
    prep = {"modality": "rgb", "num_frames": length, "frame_size": frame_size, "crop_size": size,
            "scale": 1 / 255, "mean": [0.43, 0.39, 0.37], "std": [0.22, 0.22, 0.21]}
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, (length, *frame_size, 3), np.uint8))
    iterators = {augment: _iterator(frames, prep, mode, augment) for augment in ("host", "device")}
    seconds, nbytes = {}, {}
    for augment, iterator in iterators.items():
        nbytes[augment] = _bytes(next(iterator))  # also the warm-up
        seconds[augment] = 0.0
    for _ in range(rounds):  # alternately
        for augment, iterator in iterators.items():
            start = time.perf_counter()
            for _ in range(batches):
                next(iterator)
            seconds[augment] += time.perf_counter() - start
    clips = rounds * batches * BATCH
    return {"size": name, "mode": mode, "host_clips_per_s": clips / seconds["host"],
            "device_path_host_clips_per_s": clips / seconds["device"],
            "host_time_ratio": seconds["host"] / seconds["device"], "host_bytes_per_clip": nbytes["host"],
            "device_bytes_per_clip": nbytes["device"], "bytes_ratio": nbytes["host"] / nbytes["device"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3, help="batches per round and path")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    results = []
    for name in SIZES:
        for mode in ("train", "val"):
            row = measure(name, mode, args.rounds, args.batches)
            results.append(row)
            print(f"{name} {mode}: host path {row['host_clips_per_s']:.1f} clips/s, device path (host side) "
                  f"{row['device_path_host_clips_per_s']:.1f} clips/s ({row['host_time_ratio']:.1f}x less host "
                  f"time); bytes/clip {row['host_bytes_per_clip']} -> {row['device_bytes_per_clip']} "
                  f"({row['bytes_ratio']:.2f}x fewer)", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
