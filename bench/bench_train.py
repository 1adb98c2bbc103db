"""Training memory and throughput of a preset with the reference recipe (AdamW, ``model.fit``).

    python bench/bench_train.py --batch-sizes 1,2,4                      # peak memory per batch, slope per clip
    python bench/bench_train.py --batch-sizes 2 --variant off='{}' --variant on='{"remat": true}' --rounds 3
    python bench/bench_train.py --variant today='{"repo": "/tmp/kb3d_base"}' --variant now='{}' --batch-sizes 2
    python bench/bench_train.py --saved                                   # what the backward pass keeps, by kind
    python bench/bench_train.py --batch-sizes 8 --precisions float32,mixed_bfloat16 --accumulations 1,16

Every measurement (variant x precision x accumulation x batch size) runs in a child process of its own:
the dtype policy is process-wide, and the peak resident memory (``ru_maxrss``) of a process is its own.
A watchdog polls the child's resident memory and kills it past ``--max-rss-gb`` (reported as such), so a
configuration that does not fit cannot take the shared machine down. On a GPU the child also reports the
device's peak (``tf.config.experimental.get_memory_info``).

The child builds the model, compiles it as ``keras_bert3d.models.recipe`` does, and calls ``model.fit`` on
a repeated in-memory batch of random clips (no tf.data prefetch buffer, no decoding: bench_data.py measures
those). The first ``--warmup`` steps (tracing) are not timed. Per variant and precision the memory table
fits ``peak = baseline + slope x batch`` (least squares over the batch sizes): the baseline is the process,
the weights and the optimiser state, the slope the activations kept per clip.

A variant is ``NAME=JSON``: ``"overrides"`` go to ``build_model`` (``{"remat": true}``; a bare JSON object
without "overrides"/"repo" is taken as the overrides), ``"repo"`` is a checkout to import keras_bert3d from
(e.g. a ``git archive`` of an older commit, to compare against today's code in the same run). Variants run
alternately, round by round (``--rounds``), so slow phases of a shared machine hit each of them; the step
time ratios to the first variant are printed per round, their spread is the noise.

``--saved`` traces one training step at batch 1 (no run) and sums the forward tensors the gradient ops
read, by producing op and by block: the activations the backward pass keeps alive (before grappler's
rewrites; shape-only reads excluded).
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2 ** 30


def _import_recipe():
    try:
        from keras_bert3d.models import recipe
    except ImportError:  # a checkout from before the recipe moved to the models (or into the package)
        try:
            from keras_bert3d.training import recipe
        except ImportError:
            from training import recipe
    return recipe


def _build(args):
    import keras

    if args.precision != "float32":
        keras.config.set_dtype_policy(args.precision)
    from keras_bert3d.models.builder import build_model

    return build_model(args.model, args.num_classes, **json.loads(args.overrides))


def _one(args):
    """Runs one configuration in this process; prints a JSON line."""
    sys.path.insert(0, args.repo)
    import keras
    import numpy as np
    import tensorflow as tf

    recipe = _import_recipe()
    model = _build(args)
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
    timed, timed_cpu = times[args.warmup:], cpu[args.warmup:]
    gpu = tf.config.list_physical_devices("GPU")
    device_peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / GIB if gpu else None
    print(json.dumps({"batch_size": args.batch_size, "first_step_s": times[0], "step_s": statistics.median(timed),
                      "cpu_s_per_step": statistics.median(timed_cpu), "load_average": os.getloadavg()[0],
                      "clips_per_s": args.batch_size / statistics.median(timed),
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                      "device_peak_gib": device_peak, "device": "GPU" if gpu else "CPU",
                      "params": model.count_params(), "code": sys.modules["keras_bert3d"].__file__}), flush=True)


def _saved(args):
    """Traces one training step at batch 1; prints the activations its gradient ops read, by kind and block."""
    sys.path.insert(0, args.repo)
    import collections

    import keras
    import tensorflow as tf

    model = _build(args)
    prep = model.preprocessing
    shape = (1, prep["num_frames"], prep["crop_size"], prep["crop_size"], len(prep["mean"]))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec(shape, tf.float32), tf.TensorSpec((1,), tf.int32)).graph
    ops = graph.get_operations()
    first = next(i for i, op in enumerate(ops) if op.name.startswith("gradient_tape"))
    backward = {op.name for op in ops[first:]}
    readers, tensors = collections.defaultdict(set), {}
    for op in ops[first:]:
        for t in op.inputs:
            if t.op.name not in backward and t.op.type not in ("Const", "ReadVariableOp", "Placeholder"):
                readers[t.name].add(op.type)
                tensors[t.name] = t
    by_kind, by_block = collections.Counter(), collections.Counter()
    for name, users in readers.items():
        t = tensors[name]
        if t.shape.num_elements() is None or users <= {"Shape", "ShapeN", "Size", "Rank"}:
            continue
        size = t.shape.num_elements() * t.dtype.size
        by_kind[f"{t.op.type} ({t.dtype.name})"] += size
        block = re.search(r"(layer\d_block\d+|mixed_\w+?_|res\d_block\d+|stem)", t.op.name)
        by_block[block.group(1).rstrip("_") if block else "other"] += size
    total = sum(by_kind.values())
    print(json.dumps({"total_gib": total / GIB, "by_kind_mib": {k: v / 2 ** 20 for k, v in by_kind.most_common()},
                      "by_block_mib": {k: v / 2 ** 20 for k, v in sorted(by_block.items())}}), flush=True)


def _rss_gib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next(line for line in f if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 2 ** 20
    except (OSError, StopIteration):
        return 0.0


def _run_child(command, max_rss_gib):
    """Runs ``command``; kills it once its resident memory passes ``max_rss_gib``. (stdout, stderr, rc, note)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=devnull)
    import threading

    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read())) for s, b in
               ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    peak, note = 0.0, None
    while proc.poll() is None:
        rss = _rss_gib(proc.pid)
        peak = max(peak, rss)
        if rss > max_rss_gib:
            proc.kill()
            note = f"killed by the watchdog at {rss:.1f} GiB resident (limit {max_rss_gib} GiB)"
        time.sleep(0.2)
    for r in readers:
        r.join()
    if proc.returncode == -9 and note is None:
        note = "killed by signal 9 (the kernel's out-of-memory killer?)"
    return "".join(out), "".join(err), proc.returncode, note, peak


def _parse_variant(text):
    name, _, spec = text.partition("=")
    spec = json.loads(spec or "{}")
    if not {"repo", "overrides"} & set(spec):
        spec = {"overrides": spec}
    return name, os.path.abspath(spec.get("repo", REPO)), spec.get("overrides", {})


def _fit_line(points):
    """Least squares ``peak = a + b * batch`` over (batch, peak) points: (a, b), or None below two batch sizes."""
    if len({b for b, _ in points}) < 2:
        return None
    n = len(points)
    mb, mp = sum(b for b, _ in points) / n, sum(p for _, p in points) / n
    slope = sum((b - mb) * (p - mp) for b, p in points) / sum((b - mb) ** 2 for b, _ in points)
    return mp - slope * mb, slope


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rgb_r2plus1d_32f_34_bert10")
    parser.add_argument("--num-classes", type=int, default=51)
    parser.add_argument("--batch-sizes", default="2", help="comma-separated batch sizes, e.g. 1,2,4,8")
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (tracing)")
    parser.add_argument("--accumulations", default="1", help="gradient accumulation steps to compare")
    parser.add_argument("--precisions", default="float32", help="float32, mixed_bfloat16, mixed_float16 (GPU)")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=JSON: build_model overrides, or {\"repo\": ..., \"overrides\": {...}}")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds over the variants")
    parser.add_argument("--max-rss-gb", type=float, default=12.0, help="watchdog: kill a child past this (GiB)")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True")
    parser.add_argument("--saved", action="store_true", help="trace only: what the backward pass keeps")
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--repo", default=REPO, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--saved-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--accumulation", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return _one(args)
    if args.saved_one:
        return _saved(args)

    variants = [_parse_variant(v) for v in args.variant] or [("default", REPO, {})]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows, notes = [], []
    common = ["--model", args.model, "--num-classes", str(args.num_classes)] + (["--jit"] if args.jit else [])
    for round_ in range(args.rounds):
        for precision in args.precisions.split(","):
            for accumulation in (int(a) for a in args.accumulations.split(",")):
                for batch in ([1] if args.saved else batch_sizes):
                    for name, repo, overrides in variants:
                        command = [sys.executable, os.path.abspath(__file__), "--saved-one" if args.saved else "--one",
                                   "--repo", repo, "--overrides", json.dumps(overrides), "--precision", precision,
                                   "--accumulation", str(accumulation), "--batch-size", str(batch),
                                   "--steps", str(args.steps), "--warmup", str(args.warmup)] + common
                        key = dict(variant=name, precision=precision, accumulation=accumulation, batch_size=batch,
                                   round=round_)
                        out, err, rc, note, polled = _run_child(command, args.max_rss_gb)
                        lines = [line for line in out.splitlines() if line.startswith("{")]
                        if rc or not lines:
                            reason = note or (err.strip().splitlines() or [f"exit code {rc}"])[-1][:300]
                            notes.append(f"{name}, {precision}, accumulation {accumulation}, batch {batch}: "
                                         f"failed ({reason}; polled peak {polled:.1f} GiB)")
                            print("  " + notes[-1], file=sys.stderr, flush=True)
                            continue
                        rows.append({**key, **json.loads(lines[-1]), "polled_peak_gib": polled})
                        print(f"  done: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    if args.saved:
        for r in rows:
            print(f"\n{r['variant']} ({r['precision']}): the backward pass keeps {r['total_gib']:.3f} GiB per clip")
            for k, v in r["by_kind_mib"].items():
                print(f"  {k:32s} {v:8.1f} MiB")
            print("  by block: " + ", ".join(f"{k} {v:.0f}" for k, v in r["by_block_mib"].items()))
    else:
        _report(args, rows, variants)
    print_notes_and_json(args.json, rows, notes)
    return 0


def print_notes_and_json(path, rows, notes):
    """The notes of a run as list lines, and the rows and notes as JSON to ``path`` (None: not written)."""
    for note in notes:
        print(f"- {note}")
    if path:
        with open(path, "w") as f:
            json.dump({"rows": rows, "notes": notes, "argv": sys.argv[1:]}, f, indent=1)


def _report(args, rows, variants):
    device = rows[0]["device"] if rows else "?"
    print(f"\n{args.model}, {args.steps} timed steps after {args.warmup} warm-up, {device} "
          f"({os.cpu_count()} cores), jit_compile={args.jit}, {args.rounds} round(s)")
    print("| variant | precision | accumulation | batch | step (s) | clips/s | CPU s/step | peak RSS (GiB) | "
          "device peak (GiB) | load |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        dev = "-" if r["device_peak_gib"] is None else f"{r['device_peak_gib']:.2f}"
        print(f"| {r['variant']} | {r['precision']} | {r['accumulation']} | {r['batch_size']} | {r['step_s']:.2f} | "
              f"{r['clips_per_s']:.3f} | {r['cpu_s_per_step']:.1f} | {r['peak_rss_gib']:.2f} | {dev} | "
              f"{r['load_average']:.1f} |")
    groups = {}
    for r in rows:
        groups.setdefault((r["variant"], r["precision"], r["accumulation"]), {}).setdefault(
            r["batch_size"], []).append(r)
    print("\n| variant | precision | accumulation | baseline (GiB) | slope (GiB per clip) |")
    print("|---|---|---|---:|---:|")
    for (name, precision, accumulation), by_batch in groups.items():
        for metric in ("peak_rss_gib", "device_peak_gib"):
            points = [(b, min(r[metric] for r in rs)) for b, rs in by_batch.items() if rs[0][metric] is not None]
            line = _fit_line(points)
            if line:
                label = "" if metric == "peak_rss_gib" else " (device)"
                print(f"| {name}{label} | {precision} | {accumulation} | {line[0]:.2f} | {line[1]:.3f} |")
    if len(variants) > 1:
        first = variants[0][0]
        print(f"\nstep time / {first}'s, per round (wall | CPU):")
        for (name, precision, accumulation), by_batch in groups.items():
            if name == first:
                continue
            for batch, rs in by_batch.items():
                base = groups.get((first, precision, accumulation), {}).get(batch, [])
                pairs = [(r["step_s"] / b["step_s"], r["cpu_s_per_step"] / b["cpu_s_per_step"])
                         for r, b in zip(sorted(rs, key=lambda r: r["round"]), sorted(base, key=lambda r: r["round"]))]
                if pairs:
                    print(f"  {name}, {precision}, acc {accumulation}, batch {batch}: " + ", ".join(
                        f"{w:.3f} | {c:.3f}" for w, c in pairs) + f"  (median wall "
                        f"{statistics.median(w for w, _ in pairs):.3f}, CPU {statistics.median(c for _, c in pairs):.3f})")


if __name__ == "__main__":
    sys.exit(main())
