"""Input pipeline speed: training clips/s from each source, per core, next to what a training step consumes.

The script makes its own data in a temporary folder (`data_media`): per ``--codecs`` kind, ``--videos`` real
encoded videos of ``--frames`` frames (``avi``: 320x240 MPEG-4 Part 2 like UCF101; ``mp4``: 340x256 H.264 with
B-frames like Kinetics), their frames as JPEG folders, and per input size TFRecords at the preset's
``frame_size`` (`bert3d to-tfrecord --preset`).

For each input size (32x112x112: rgb_r2plus1d_32f_34_bert10's preprocessing; 64x224x224:
rgb_I3D64f_bert2's), each kind and each source ("video": PyAV; "frames": JPEG folders; "tfrecord"), it runs
`make_dataset(mode="train", batch_size=8)` (random clip, multi-scale crop, flip, normalisation) and reports
clips/s after a warm-up: the median of ``--rounds`` measurements taken round-robin over the sources, each with
a fresh pipeline, so that the load of a shared machine drifting during the run does not favour one source.

``--cores N`` pins the process to N cores before TensorFlow starts and gives TF and tf.data exactly N threads
(PyAV decodes with one thread per call): clips/s per core with ``--cores 1``. ``--stages`` adds the cost of
each stage alone (`data_stages`: decode, resize, crop, flip, normalise, batch), ms per clip, beside the
end-to-end rate, and the DCT-scaling check. ``--augment host,device`` compares where crop/flip/normalise run (`AUGMENTS`), round-robin.

It then builds rgb_r2plus1d_32f_34_bert10 with 101 classes, compiles it with AdamW, times
``train_on_batch`` at ``--train-batch`` (8) on random 32x112x112 clips and reports the clips/s one
training step consumes. Ratio = source clips/s / training clips/s: a source keeps up when >= 1.

    python bench/bench_data.py                                   # the full run
    python bench/bench_data.py --quick                           # ~1 minute
    python bench/bench_data.py --cores 1 --stages --skip-train --json out.json
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from data_media import PROFILES, dct_scaling_check, make_data  # noqa: E402

TRAIN_PRESET = "rgb_r2plus1d_32f_34_bert10"
CONFIGS = (("32x112x112", TRAIN_PRESET), ("64x224x224", "rgb_I3D64f_bert2"))
SOURCES = ("video", "frames", "tfrecord")
BATCH = 8
# --augment: the extra `make_dataset` arguments of each choice. "host": crop, flip and normalise on the host (the
# pipeline's default); "device": the host decodes, resizes and cuts the uint8 box, the accelerator does the rest
# (`ClipAugmenter`), so clips/s is what the host hands on.
AUGMENTS = {"host": {}, "device": {"augment": "device"}}


def pin_cores(cores):
    """Restricts this process to its first ``cores`` usable cores; before TensorFlow starts, so that every
    thread it makes inherits the mask. Returns the cores used."""
    available = sorted(os.sched_getaffinity(0))
    if cores is None:
        return available
    if not 1 <= cores <= len(available):
        raise SystemExit(f"--cores must be 1..{len(available)}; received {cores}")
    os.sched_setaffinity(0, available[:cores])
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(cores)
    return available[:cores]


def configure_threads(tf, cores):
    """TF's op thread pools at ``cores`` threads (must run before the first op)."""
    if cores is not None:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(cores)


def with_threads(dataset, cores):
    """``dataset`` running on a private pool of ``cores`` threads (None: tf.data's default, every core)."""
    import tensorflow as tf

    if cores is None:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = cores
    return dataset.with_options(options)


def clips_per_second(dataset, seconds, warmup, min_batches):
    iterator = iter(dataset.repeat())
    for _ in range(warmup):
        next(iterator)
    start, batches, clips = time.perf_counter(), 0, 0
    while batches < min_batches or time.perf_counter() - start < seconds:
        clips += clip_count(next(iterator))
        batches += 1
    return clips / (time.perf_counter() - start), batches


def clip_count(element):
    """Clips in one batch, whatever else the element holds beside them."""
    import tensorflow as tf

    return int(tf.nest.flatten(element)[0].shape[0])


def bench_sources(data, args):
    from keras_bert3d.data.pipeline import make_dataset
    from keras_bert3d.models.builder import get_preset

    rows = []
    for label, preset in CONFIGS:
        prep = get_preset(preset)["preprocessing"]
        runs = [(d, source, augment) for d in data for source in SOURCES for augment in args.augment]
        rates = {(d["codec"], source, augment): [] for d, source, augment in runs}
        for _ in range(args.rounds):  # round-robin, a fresh pipeline each time: load drifts hit all alike
            for d, source, augment in runs:
                inputs = {"video": d["videos"], "frames": d["frames"], "tfrecord": d["tfrecords"][label]}
                dataset = make_dataset(inputs[source], prep, mode="train", batch_size=BATCH, source=source, seed=0,
                                       **AUGMENTS[augment]).dataset
                dataset = with_threads(dataset, args.cores)
                rates[d["codec"], source, augment].append(clips_per_second(dataset, args.seconds, args.warmup,
                                                                           args.min_batches)[0])
                del dataset
        for d, source, augment in runs:
            found = rates[d["codec"], source, augment]
            row = {"input": label, "preset": preset, "frame_size": prep["frame_size"], "codec": d["codec"],
                   "source": source, "augment": augment, "clips_per_s": float(np.median(found)), "rounds": found}
            if source == "tfrecord":
                row["write_videos_per_s"] = d["write_videos_per_s"][label]
            rows.append(row)
            print(f"  {label} {d['codec']} {source:8s} augment={augment:6s} {row['clips_per_s']:8.2f} clips/s "
                  f"(median; rounds: {', '.join(f'{r:.1f}' for r in found)})", flush=True)
    return rows


def bench_stages(data, rows, args):
    from data_stages import stage_costs, stage_table

    from keras_bert3d.models.builder import get_preset

    if args.cores != 1:
        print(f"note: stages run on {len(os.sched_getaffinity(0))} cores; --cores 1 gives per-core figures")
    stages = []
    for label, preset in CONFIGS:
        prep = get_preset(preset)["preprocessing"]
        for d in data:
            stages += stage_costs(d, label, prep, BATCH, args.stage_seconds)
    checks = [dct_scaling_check(get_preset(preset)["preprocessing"]["frame_size"]) for _, preset in CONFIGS]
    print()
    print(stage_table(stages, rows, args.cores or len(os.sched_getaffinity(0))))
    for c in checks:
        print(f"DCT scaling: frames {c['stored'][1]}x{c['stored'][0]} -> {c['frame_size'][1]}x{c['frame_size'][0]}:"
              f" decode_jpeg(ratio=2) + resize differs from full decode + resize by {c['mean_abs_diff']:.2f} grey "
              f"levels on average; {c['ms_ratio2']:.2f} vs {c['ms_full']:.2f} ms per frame")
    return stages, checks


def bench_train(args):
    import keras

    from keras_bert3d.models.builder import build_model

    model = build_model(TRAIN_PRESET, 101)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-5, weight_decay=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.train_batch, 32, 112, 112, 3), dtype=np.float32)
    y = rng.integers(0, 101, args.train_batch)
    model.train_on_batch(x, y)  # traces and builds the optimizer
    times = []
    for _ in range(args.train_steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    step = float(np.median(times))
    return {"preset": TRAIN_PRESET, "batch": args.train_batch, "step_s": step, "steps": len(times), "times": times,
            "clips_per_s": args.train_batch / step}


def table(rows, train):
    lines = ["| input | data | source | augment | clips/s (median) | rounds | ratio to training step |",
             "|---|---|---|---|---:|---|---:|"]
    for row in rows:
        ratio = f"{row['clips_per_s'] / train['clips_per_s']:.1f}x" if train and row["input"] == CONFIGS[0][0] else "-"
        lines.append(f"| {row['input']} ({row['preset']}, frames {row['frame_size'][0]}x{row['frame_size'][1]}) "
                     f"| {row['codec']} | {row['source']} | {row['augment']} | {row['clips_per_s']:.2f} | "
                     f"{' / '.join(f'{r:.1f}' for r in row['rounds'])} | {ratio} |")
    if train:
        lines.append(f"| 32x112x112 | - | - | training step of {train['preset']} (batch {train['batch']}, "
                     f"{train['step_s']:.2f} s/step, median of {train['steps']}) | {train['clips_per_s']:.3f} | "
                     f"{' / '.join(f'{t:.1f} s' for t in train['times'])} | 1.0x |")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="4 videos of 96 frames, 1 round of 1.5 s, stages 0.2 s, 2 train steps")
    parser.add_argument("--codecs", default=",".join(PROFILES), help=f"video kinds, of {sorted(PROFILES)} "
                        "(default: both)")
    parser.add_argument("--cores", type=int, help="pin to this many cores, TF/tf.data threads = cores (default: all)")
    parser.add_argument("--stages", action="store_true", help="also time each stage alone (ms per clip)")
    parser.add_argument("--augment", default="host", help=f"where crop/flip/normalise run: of {sorted(AUGMENTS)}, "
                        "comma-separated to compare them round-robin (default host)")
    parser.add_argument("--videos", type=int, help="videos per kind (default 16; quick 4)")
    parser.add_argument("--frames", type=int, help="frames per video (default 150; quick 96)")
    parser.add_argument("--size", help="video WIDTHxHEIGHT for every kind (default: the kind's)")
    parser.add_argument("--gop", type=int, help="frames between keyframes (default: the kind's, 12 / 90)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (default 10; quick 1.5)")
    parser.add_argument("--stage-seconds", type=float, help="seconds per stage timing (default 1; quick 0.2)")
    parser.add_argument("--rounds", type=int, help="measurements per source, round-robin (default 3; quick 1)")
    parser.add_argument("--warmup", type=int, default=2, help="batches before timing (default 2)")
    parser.add_argument("--min-batches", type=int, default=3, help="batches timed at least (default 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="TFRecord writer processes")
    parser.add_argument("--train-batch", type=int, default=BATCH, help="training batch (default 8)")
    parser.add_argument("--train-steps", type=int, help="timed training steps (default 5; quick 2)")
    parser.add_argument("--skip-train", action="store_true", help="do not time the training step")
    parser.add_argument("--keep", help="write the data here and keep it (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name, known in (("codecs", PROFILES), ("augment", AUGMENTS)):
        values = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
        if not values or set(values) - set(known):
            parser.error(f"--{name} takes {sorted(known)}, comma-separated; received {getattr(args, name)!r}")
        setattr(args, name, values)
    args.videos = args.videos or (4 if args.quick else 16)
    args.frames = args.frames or (96 if args.quick else 150)
    args.seconds = args.seconds or (1.5 if args.quick else 10.0)
    args.stage_seconds = args.stage_seconds or (0.2 if args.quick else 1.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.train_steps = args.train_steps or (2 if args.quick else 5)
    args.size = [int(v) for v in args.size.lower().split("x")] if args.size else None
    if args.frames < 64:
        parser.error("--frames must be >= 64 (the 64-frame clips)")
    return args


def main(argv=None):
    args = parse_args(argv)
    used = pin_cores(args.cores)  # before TensorFlow starts

    import tensorflow as tf

    configure_threads(tf, args.cores)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, using {len(used)} ({used}), TF {tf.__version__}, "
          f"load {os.getloadavg()}")
    root = args.keep or tempfile.mkdtemp(prefix="bench_data_")
    stages = checks = None
    try:
        data = make_data(root, args, CONFIGS)
        rows = bench_sources(data, args)
        if args.stages:
            stages, checks = bench_stages(data, rows, args)
        train = None if args.skip_train else bench_train(args)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rows, train))
    if train:
        best = max((r for r in rows if r["input"] == CONFIGS[0][0]), key=lambda r: r["clips_per_s"])
        verdict = "keeps up" if best["clips_per_s"] >= train["clips_per_s"] else "does NOT keep up"
        print(f"\nfastest source at 32x112x112: {best['source']}, augment={best['augment']} "
              f"({best['clips_per_s']:.2f} clips/s) {verdict} with "
              f"the training step ({train['clips_per_s']:.2f} clips/s): "
              f"{best['clips_per_s'] / train['clips_per_s']:.1f}x")
    if len(args.augment) > 1:
        base = {(r["input"], r["codec"], r["source"]): r["clips_per_s"] for r in rows if r["augment"] == args.augment[0]}
        for r in rows:
            if r["augment"] != args.augment[0]:
                print(f"{r['input']} {r['codec']} {r['source']}: augment={r['augment']} / {args.augment[0]} = "
                      f"{r['clips_per_s'] / base[r['input'], r['codec'], r['source']]:.2f}x")
    for row in rows:
        if "write_videos_per_s" in row and row["augment"] == args.augment[0]:
            print(f"to-tfrecord {row['input']} {row['codec']}: {row['write_videos_per_s']:.2f} videos/s "
                  f"({args.workers} workers)")
    print(f"load after: {os.getloadavg()}")
    if args.json:
        info = [{k: v for k, v in d.items() if k not in ("videos", "frames", "tfrecords")} for d in data]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "cores": used, "data": info, "sources": rows, "stages": stages,
                       "dct_scaling": checks, "train": train}, f, indent=1)


if __name__ == "__main__":
    main()
