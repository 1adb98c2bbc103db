"""The tf.data service on loopback: what one trainer can pull through it, and the served pipeline beside the local one.

An in-process dispatcher and ``--workers`` workers (keras_bert3d.data.service). Two measures, printed as rates and
ratios, then one JSON line:

- transfer: elements/s and MB/s of constant tensors the size of a clip (float32 and uint8, one clip or a batch of
  4 per element): the service's own ceiling, with no pipeline work;
- pipeline: ``make_dataset`` train clips/s from synthetic TFRecord shards (``--frame-size``, 16 x 112 crops),
  local and through the service, alternately (``--rounds``), the first batch of each pass left out.

On one host the workers share the trainer's cores, so the served/local ratio is a cost, not a speed-up: the
service pays where other hosts' cores do the work.

    python bench/bench_service.py --rounds 3
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PREP = {"modality": "rgb", "num_frames": 16, "crop_size": 112, "scale": 1 / 255, "mean": [0.45] * 3,
        "std": [0.225] * 3}


def _rate(dataset, size_of):
    elements = iter(dataset)
    next(elements)  # the job's start-up is not throughput
    start, count, units = time.perf_counter(), 0, 0
    for element in elements:
        count, units = count + 1, units + size_of(element)
    seconds = time.perf_counter() - start
    return count / seconds, units / seconds


def transfer(address, elements=400):
    import tensorflow as tf

    from keras_bert3d.data.service import distribute

    out = {}
    for name, shape, dtype in [("clip_f32", [16, 112, 112, 3], tf.float32), ("clip_u8", [16, 112, 112, 3], tf.uint8),
                               ("batch4_f32", [4, 16, 112, 112, 3], tf.float32)]:
        per = elements // (shape[0] if name.startswith("batch") else 1)
        source = tf.data.Dataset.range(8).interleave(
            lambda _: tf.data.Dataset.from_tensors(tf.zeros(shape, dtype)).repeat(per // 8), cycle_length=1)
        rate, nbytes = _rate(distribute(source, address), lambda x: int(np.prod(x.shape)) * x.dtype.size)
        out[name] = {"elements_per_s": round(rate, 1), "mb_per_s": round(nbytes / 1e6)}
    return out


def shards(folder, videos, frame_size):
    from keras_bert3d.data.records import VideoIndex, VideoRecord
    from keras_bert3d.data.synthetic import write_video
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    rng = np.random.default_rng(0)
    records = []
    for k in range(videos):
        path = os.path.join(folder, f"v{k}.mp4")
        write_video(path, rng.integers(0, 256, (48, *frame_size, 3), dtype=np.uint8))
        records.append(VideoRecord(path, k % 2, f"c{k % 2}"))
    write_tfrecords(VideoIndex(records, ["c0", "c1"]), os.path.join(folder, "shards"), num_shards=8, workers=1,
                    progress=False, frame_size=frame_size)
    return os.path.join(folder, "shards")


def pipeline(address, folder, frame_size, rounds):
    from keras_bert3d.data.pipeline import make_dataset

    prep = dict(PREP, frame_size=frame_size)
    rates = {"local": [], "served": []}
    for k in range(rounds + 1):  # round 0 warms both up
        for name, service in (("local", None), ("served", address)):
            dataset = make_dataset(folder, prep, "train", batch_size=4, seed=1, reshuffle_each_iteration=False,
                                   service=service).dataset
            rate, clips = _rate(dataset, lambda batch: int(batch[0].shape[0]))
            if k:
                rates[name].append(round(clips, 1))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--videos", type=int, default=96, help="videos in the synthetic shards")
    parser.add_argument("--frame-size", type=int, nargs=2, default=[128, 172], metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from keras_bert3d.data import service

    dispatcher = service.start_dispatcher()
    workers = [service.start_worker(dispatcher.target) for _ in range(args.workers)]
    try:
        moved = transfer(dispatcher.target)
        for name, figures in moved.items():
            print(f"transfer {name:<11} {figures['elements_per_s']:>7.1f} elements/s  {figures['mb_per_s']:>6} MB/s")
        with tempfile.TemporaryDirectory() as folder:
            rates = pipeline(dispatcher.target, shards(folder, args.videos, args.frame_size), args.frame_size,
                             args.rounds)
        ratio = float(np.median(rates["served"]) / np.median(rates["local"]))
        print(f"pipeline clips/s local {rates['local']}  served {rates['served']}  served/local {ratio:.2f}")
        print(json.dumps({"workers": args.workers, "transfer": moved, "pipeline": rates, "served_over_local": ratio}))
    finally:
        for server in (*workers, dispatcher):
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
