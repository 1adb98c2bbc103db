"""Input pipeline speed: training clips/s from each source, next to what a training step consumes.

The script makes its own data in a temporary folder: ``--videos`` H.264 mp4 videos of ``--size``
(320x240, UCF101's size) and ``--frames`` frames (a textured background panning under moving
blobs, with light noise: it compresses like real footage, not like white noise), one keyframe every
``--gop`` frames; their frames as ``img_%05d.jpg`` folders (JPEG quality 90, full size, as the
reference's extracted frames); and, per input size, TFRecord shards written by `write_tfrecords`
with frames already resized to the preset's ``frame_size`` (`bert3d to-tfrecord --preset`).

For each input size (32x112x112: rgb_r2plus1d_32f_34_bert10's preprocessing; 64x224x224:
rgb_I3D64f_bert2's) and each source ("video": PyAV; "frames": JPEG folders; "tfrecord"), it runs
`make_dataset(mode="train", batch_size=8)` (random clip, multi-scale crop, flip, normalisation;
every core through tf.data AUTOTUNE) and reports clips/s after a warm-up: the median of ``--rounds``
measurements taken round-robin over the sources, each with a fresh pipeline, so that the load of a
shared machine drifting during the run does not favour one source.

It then builds rgb_r2plus1d_32f_34_bert10 with 101 classes, compiles it with AdamW, times
``train_on_batch`` at ``--train-batch`` (8) on random 32x112x112 clips and reports the clips/s one
training step consumes. Ratio = source clips/s / training clips/s: a source keeps up when >= 1.
Both are measured alone on the same machine; in a real run they share its cores.

    python bench/bench_data.py                 # the full run
    python bench/bench_data.py --quick         # fewer videos, shorter measurements
    python bench/bench_data.py --skip-train --json out.json
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

import numpy as np  # noqa: E402

TRAIN_PRESET = "rgb_r2plus1d_32f_34_bert10"
CONFIGS = (("32x112x112", TRAIN_PRESET), ("64x224x224", "rgb_I3D64f_bert2"))
SOURCES = ("video", "frames", "tfrecord")
BATCH = 8


def render(num_frames, width, height, seed):
    """Natural-ish frames: a smooth random texture panning, three moving blobs, noise of +-3."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, (height // 16 + 3, width // 16 + 3 + num_frames // 8, 3)).astype(np.float32)
    texture = np.kron(coarse, np.ones((16, 16, 1), np.float32))
    yy, xx = np.mgrid[0:height, 0:width]
    blobs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-2, 2),
              rng.uniform(10, 30), rng.uniform(0, 255, 3)) for _ in range(3)]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = texture[t // 16 % 8:t // 16 % 8 + height, t // 2:t // 2 + width].copy()
        for x, y, vx, vy, r, colour in blobs:
            mask = (xx - (x + vx * t) % width) ** 2 + (yy - (y + vy * t) % height) ** 2 < r * r
            frame[mask] = colour
        frame += rng.uniform(-3, 3, frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def make_data(root, args):
    """Videos, frame folders and their two indexes; returns (video_index, frames_index, seconds)."""
    from keras_bert3d.data.jpeg_frames import encode_jpeg
    from keras_bert3d.data.records import VideoIndex, VideoRecord
    from keras_bert3d.data.synthetic import write_video

    start = time.perf_counter()
    width, height = args.size
    classes = [f"class{k}" for k in range(4)]
    videos, folders = [], []
    for i in range(args.videos):
        frames = render(args.frames, width, height, seed=i)
        path = os.path.join(root, "videos", f"v{i:03d}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, frames, fps=25, gop_size=args.gop)
        folder = os.path.join(root, "frames", f"v{i:03d}")
        os.makedirs(folder)
        for t, frame in enumerate(frames):
            with open(os.path.join(folder, f"img_{t + 1:05d}.jpg"), "wb") as f:
                f.write(encode_jpeg(frame, 90))
        label = i % len(classes)
        videos.append(VideoRecord(path, label, classes[label]))
        folders.append(VideoRecord(folder, label, classes[label], num_frames=args.frames))
    video_index = VideoIndex(videos, classes, source="video")
    return video_index, VideoIndex(folders, classes, source="frames"), time.perf_counter() - start


def clips_per_second(dataset, seconds, warmup, min_batches):
    iterator = iter(dataset.repeat())
    for _ in range(warmup):
        next(iterator)
    start, batches = time.perf_counter(), 0
    while batches < min_batches or time.perf_counter() - start < seconds:
        clips, _ = next(iterator)
        batches += 1
    return batches * int(clips.shape[0]) / (time.perf_counter() - start), batches


def bench_sources(root, video_index, frames_index, args):
    from keras_bert3d.data.pipeline import make_dataset
    from keras_bert3d.data.tfrecord_writer import write_tfrecords
    from keras_bert3d.models.builder import get_preset

    rows = []
    for label, preset in CONFIGS:
        prep = get_preset(preset)["preprocessing"]
        out = os.path.join(root, f"tfrecord_{label}")
        start = time.perf_counter()
        write_tfrecords(video_index, out, frame_size=prep["frame_size"], workers=args.workers, progress=False)
        write_seconds = time.perf_counter() - start
        inputs = {"video": video_index, "frames": frames_index, "tfrecord": out}
        rates = {source: [] for source in SOURCES}
        for _ in range(args.rounds):  # round-robin, a fresh pipeline each time: load drifts hit all alike
            for source in SOURCES:
                dataset = make_dataset(inputs[source], prep, mode="train", batch_size=BATCH, source=source,
                                       seed=0).dataset
                rates[source].append(clips_per_second(dataset, args.seconds, args.warmup, args.min_batches)[0])
                del dataset
        for source in SOURCES:
            row = {"input": label, "preset": preset, "frame_size": prep["frame_size"], "source": source,
                   "clips_per_s": float(np.median(rates[source])), "rounds": rates[source]}
            if source == "tfrecord":
                row["write_videos_per_s"] = len(video_index) / write_seconds
            rows.append(row)
            print(f"  {label} {source:8s} {row['clips_per_s']:8.2f} clips/s (median; rounds: "
                  f"{', '.join(f'{r:.1f}' for r in rates[source])})", flush=True)
    return rows


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
    lines = ["| input | source | clips/s (median) | rounds | ratio to training step |", "|---|---|---:|---|---:|"]
    for row in rows:
        ratio = f"{row['clips_per_s'] / train['clips_per_s']:.1f}x" if train and row["input"] == CONFIGS[0][0] else "-"
        lines.append(f"| {row['input']} ({row['preset']}, frames {row['frame_size'][0]}x{row['frame_size'][1]}) "
                     f"| {row['source']} | {row['clips_per_s']:.2f} | {' / '.join(f'{r:.1f}' for r in row['rounds'])} "
                     f"| {ratio} |")
    if train:
        lines.append(f"| 32x112x112 | training step of {train['preset']} (batch {train['batch']}, "
                     f"{train['step_s']:.2f} s/step, median of {train['steps']}) | {train['clips_per_s']:.3f} | "
                     f"{' / '.join(f'{t:.1f} s' for t in train['times'])} | 1.0x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 videos, 1 round of 3 s, 2 train steps")
    parser.add_argument("--videos", type=int, help="number of videos (default 16; quick 6)")
    parser.add_argument("--frames", type=int, default=150, help="frames per video (default 150)")
    parser.add_argument("--size", default="320x240", help="video WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--gop", type=int, default=25, help="frames between keyframes (default 25: 1 s)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (default 10; quick 3)")
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
    args.videos = args.videos or (6 if args.quick else 16)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.train_steps = args.train_steps or (2 if args.quick else 5)
    args.size = [int(v) for v in args.size.lower().split("x")]
    if args.frames < 64:
        raise SystemExit("--frames must be >= 64 (the 64-frame clips)")

    import tensorflow as tf

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}, load {os.getloadavg()}")
    root = args.keep or tempfile.mkdtemp(prefix="bench_data_")
    try:
        video_index, frames_index, seconds = make_data(root, args)
        print(f"data: {args.videos} videos {args.size[0]}x{args.size[1]}, {args.frames} frames, gop {args.gop} "
              f"(+ frame folders) in {seconds:.0f} s", flush=True)
        rows = bench_sources(root, video_index, frames_index, args)
        train = None if args.skip_train else bench_train(args)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rows, train))
    if train:
        best = max((r for r in rows if r["input"] == CONFIGS[0][0]), key=lambda r: r["clips_per_s"])
        verdict = "keeps up" if best["clips_per_s"] >= train["clips_per_s"] else "does NOT keep up"
        print(f"\nfastest source at 32x112x112: {best['source']} ({best['clips_per_s']:.2f} clips/s) {verdict} with "
              f"the training step ({train['clips_per_s']:.2f} clips/s): "
              f"{best['clips_per_s'] / train['clips_per_s']:.1f}x")
    for row in rows:
        if "write_videos_per_s" in row:
            print(f"to-tfrecord {row['input']}: {row['write_videos_per_s']:.2f} videos/s "
                  f"({args.workers} workers)")
    print(f"load after: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "sources": rows, "train": train}, f, indent=1)


if __name__ == "__main__":
    main()
