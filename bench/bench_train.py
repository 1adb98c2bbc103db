"""Training throughput (clips/s) of a preset with the reference recipe: AdamW, with and without gradient
accumulation, in float32 and mixed precision.

    python bench/bench_train.py                         # rgb_r2plus1d_32f_34_bert10, batch 8, 3 timed steps
    python bench/bench_train.py --batch-size 2 --steps 2 --precisions float32,mixed_bfloat16

Each configuration runs in its own process (the dtype policy is process-wide and the memory of one model
is returned between runs): it builds the model, compiles it as `training.recipe` does, and calls
``model.fit`` on a repeated in-memory batch of random clips (decoding is measured by bench_data.py). The
first ``--warmup`` steps (tracing) are not timed; clips/s = batch size x timed steps / their time. With
accumulation the optimiser applies every ``--accumulation`` steps; the timed steps include those updates
in proportion. ``mixed_float16`` needs a GPU and is skipped without one. Prints a table (and ``--json``) with the wall
time and the process CPU time per step (less sensitive to other work on a shared machine) and the 1-min
load average when the configuration ended.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one(args):
    """Runs one configuration in this process; prints a JSON line."""
    sys.path.insert(0, REPO)
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_bert3d.models.builder import build_model
    from training import recipe

    if args.precision != "float32":
        keras.config.set_dtype_policy(args.precision)
    overrides = json.loads(args.overrides)
    model = build_model(args.model, args.num_classes, **overrides)
    prep = model.preprocessing
    size, frames, channels = prep["crop_size"], prep["num_frames"], len(prep["mean"])
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(args.batch_size, frames, size, size, channels)).astype("float32")
    labels = rng.integers(0, args.num_classes, args.batch_size).astype("int32")
    data = tf.data.Dataset.from_tensors((clips, labels)).repeat()
    optimizer = recipe.make_optimizer("adamw", model, gradient_accumulation_steps=args.accumulation)
    model.compile(optimizer=optimizer, loss=recipe.make_loss(), metrics=recipe.make_metrics(args.num_classes),
                  jit_compile=args.jit)
    times, cpu = [], []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)
            cpu.append(time.process_time() - self.cpu)

    model.fit(data, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0, callbacks=[Clock()])
    timed = times[args.warmup:]
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"precision": args.precision, "accumulation": args.accumulation, "batch_size": args.batch_size,
                      "first_step_s": times[0], "step_s": sum(timed) / len(timed),
                      "cpu_s_per_step": sum(cpu[args.warmup:]) / len(timed), "load_average": os.getloadavg()[0],
                      "clips_per_s": args.batch_size * len(timed) / sum(timed), "peak_rss_gb": peak_gb,
                      "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
                      "params": model.count_params()}), flush=True)


def _has_gpu():
    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return out.stdout.strip().splitlines()[-1:] not in ([], ["0"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rgb_r2plus1d_32f_34_bert10")
    parser.add_argument("--num-classes", type=int, default=51)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (tracing)")
    parser.add_argument("--accumulations", default="1,16", help="gradient accumulation steps to compare")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16,mixed_float16")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True")
    parser.add_argument("--overrides", default="{}", help='build_model overrides as JSON, e.g. \'{"num_frames": 8}\'')
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--accumulation", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return _one(args)

    gpu = _has_gpu()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    rows, notes = [], []
    for precision in args.precisions.split(","):
        if precision == "mixed_float16" and not gpu:
            notes.append("mixed_float16: skipped, float16 training needs a GPU (no GPU here)")
            continue
        for accumulation in (int(a) for a in args.accumulations.split(",")):
            command = [sys.executable, os.path.abspath(__file__), "--one", "--precision", precision,
                       "--accumulation", str(accumulation), "--model", args.model, "--num-classes",
                       str(args.num_classes), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--overrides", args.overrides] + (["--jit"] if args.jit else [])
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode or not lines:
                reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
                if result.returncode < 0:  # killed by a signal: SIGKILL is the kernel's out-of-memory killer
                    reason = f"killed by signal {-result.returncode}" + (" (out of memory)" if result.returncode == -9
                                                                          else "")
                notes.append(f"{precision}, accumulation {accumulation}: failed ({reason[:200]})")
                continue
            rows.append(json.loads(lines[-1]))
            print(f"  done: {precision}, accumulation {accumulation}: {rows[-1]['clips_per_s']:.3f} clips/s",
                  file=sys.stderr, flush=True)
    print(f"\n{args.model}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"{'GPU' if gpu else f'CPU ({os.cpu_count()} cores)'}, jit_compile={args.jit}")
    print("| precision | accumulation | step (s) | clips/s | CPU s/step | first step (s) | peak RSS (GB) | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['accumulation']} | {r['step_s']:.2f} | {r['clips_per_s']:.3f} | "
              f"{r['cpu_s_per_step']:.1f} | {r['first_step_s']:.1f} | {r['peak_rss_gb']:.1f} | "
              f"{r['load_average']:.1f} |")
    for note in notes:
        print(f"- {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "notes": notes, "argv": sys.argv[1:]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
