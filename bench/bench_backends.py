"""Forward and train-step time of small-to-moderate R(2+1)D-BERT, I3D-BERT and SlowFast-BERT on each Keras
backend (TensorFlow, JAX, PyTorch) on this machine, as ratios to TensorFlow measured in the same run, with
and without jit_compile (XLA on TF/JAX; torch's "jit_compile" is torch.compile, off by default here).

    .venv/bin/python bench/bench_backends.py [--models r2plus1d i3d slowfast] [--repeats 3] [--batch 2]

Each backend runs in its own subprocess (KERAS_BACKEND); every figure is the median of --repeats calls after
one warm-up call (the compile is reported separately as "first").
"""
import argparse
import json
import os
import subprocess
import sys
import time

# preset, overrides: full widths, fewer blocks and frames, 112x112 frames. Not 64x64: there TensorFlow's CPU
# kernel for the filter gradient of I3D's and SlowFast's 7x7x7 / 5x7x7 stride-2 stem convolutions is
# pathological (17.6 s for one clip of 16x64x64 against 0.88 s at 32x112x112 and 0.04 s forward), which no
# full-size preset meets (BENCHMARKS.md, "Backends").
MODELS = {
    "r2plus1d": ("rgb_r2plus1d_32f_34_bert10", dict(num_frames=16, image_size=112, stage_blocks=[1, 1, 1, 1])),
    "i3d": ("rgb_I3D64f_bert2", dict(num_frames=16, image_size=112)),
    "slowfast": ("rgb_slowfast64f_50_bert10_FRAB_late", dict(num_frames=32, image_size=112,
                                                            stage_blocks=[1, 1, 1, 1])),
}
BACKENDS = ("tensorflow", "jax", "torch")


def worker(args):
    import keras
    import numpy as np

    from keras_bert3d.models.builder import build_model

    results = {}
    for key in args.models:
        name, overrides = MODELS[key]
        for jit in (False, True):
            if keras.config.backend() == "torch" and jit:
                continue  # torch.compile of a 3D CNN is minutes of compile on this CPU; not measured
            start = time.perf_counter()
            model = build_model(name, 10, **overrides)
            build = time.perf_counter() - start
            model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=jit)
            x = np.random.default_rng(0).normal(size=(args.batch, *model.input.shape[1:])).astype("float32")
            y = np.arange(args.batch) % 10

            def timed(fn):
                start = time.perf_counter()
                fn()
                first = time.perf_counter() - start
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - start)
                return first, sorted(times)[len(times) // 2]

            f_first, forward = timed(lambda: model.predict_on_batch(x))
            t_first, train = timed(lambda: model.train_on_batch(x, y))
            results[f"{key}/jit={jit}"] = {"build": build, "forward": forward, "forward_first": f_first,
                                           "train": train, "train_first": t_first}
    print("RESULT " + json.dumps(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    figures = {}
    for backend in args.backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   JAX_PLATFORMS="cpu")
        cmd = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats), "--batch", str(args.batch),
               "--models", *args.models]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        if not lines:
            print(f"{backend}: failed\n{done.stderr[-2000:]}")
            continue
        figures[backend] = json.loads(lines[-1][7:])
    base = figures.get("tensorflow", {})
    print(f"{'model/jit':22s} {'backend':10s} {'build s':>8s} {'fwd s':>8s} {'fwd/TF':>7s} {'step s':>8s} "
          f"{'step/TF':>7s} {'1st fwd s':>9s} {'1st step s':>10s}")
    for key in sorted({k for f in figures.values() for k in f}):
        for backend, results in figures.items():
            if key not in results:
                continue
            r, tf_r = results[key], base.get(key) or base.get(key.replace("True", "False"))
            ratio = (lambda m: f"{r[m] / tf_r[m]:.2f}" if tf_r else "-")
            print(f"{key:22s} {backend:10s} {r['build']:8.2f} {r['forward']:8.3f} {ratio('forward'):>7s} "
                  f"{r['train']:8.3f} {ratio('train'):>7s} {r['forward_first']:9.1f} {r['train_first']:10.1f}")


if __name__ == "__main__":
    main()
