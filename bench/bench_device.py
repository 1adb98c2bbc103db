"""Training clips/s and peak device memory of R(2+1)D-BERT, I3D-BERT and SlowFast-BERT on one accelerator,
at their preset sizes, per precision, jit_compile and batch size, inside a time budget (issue 20, item 4).

    KERAS_BACKEND=jax python bench/bench_device.py --budget-s 260 --out jax.json --log jax_cases.log
    KERAS_BACKEND=torch python bench/bench_device.py --budget-s 200 --out torch.json
    KERAS_BACKEND=jax python bench/bench_device.py --smoke      # tiny models on the CPU, in seconds

Cases: rgb_r2plus1d_32f_34_bert10 (32x112²), rgb_I3D64f_bert2 and rgb_slowfast64f_50_bert10_FRAB_late
(64x224²), 101 classes; float32, mixed_float16 (the optimizer wrapped in keras.optimizers.LossScaleOptimizer)
and mixed_bfloat16; jit_compile on and off (XLA on JAX; torch.compile on PyTorch); batch 8 and 16. They run
in priority order, every model of a tier before the next tier: bfloat16 with the backend's default
jit_compile ("auto": XLA on JAX, eager on PyTorch) at batch 8; then float32, float16, the uint8 input, the other
jit_compile, batch 16, and the remaining combinations. Input ``float32`` is a normalised clip; ``uint8`` is what
``augment="device"`` sends (uint8 boxes of the short side plus crop windows and flips), trained through
`keras_bert3d.models.clip_augmenter.augmented_model`, so the step includes the device-side crop, resize, flip
and normalisation (its cost is the ratio "uint8 input / float32 input"). A case starts only while ``--min-case-s`` of the budget is left and
is killed at ``--case-timeout-s`` or the budget's end; the run always ends with the table of what it has.

Every case runs in a fresh child process (the dtype policy is process-wide, and the device's peak memory is
then the case's own: ``memory_stats()['peak_bytes_in_use']`` on JAX, ``torch.cuda.max_memory_allocated()``
on PyTorch). The child builds the preset, compiles it with the reference optimizer of
``keras_bert3d.models.recipe`` (AdamW for these presets, no gradient accumulation) and the model's
loss and top1/top5 metrics, and draws one random float32 batch on the device (no host transfer, no decoding).
``--warmup`` calls of ``train_on_batch`` (trace, XLA compile, cuDNN autotuning) are not timed; then rounds of
``--steps`` training steps through ``model.train_function`` (the loop ``fit`` runs, without per-step host
sync) are timed to a device sync each, until ``--rounds`` or ``--time-s``. clips/s = clips / timed seconds.

float32 means float32: TF32 is off (``NVIDIA_TF32_OVERRIDE=0``; on JAX ``jax_default_matmul_precision=
highest``; on PyTorch ``allow_tf32=False`` for matmul and cuDNN). Mixed cases keep the backend's defaults.
PyTorch runs with ``cudnn.benchmark=True``.

The host input pipeline (tf.data) is not measured here, since an accelerator host may lack TensorFlow: its
clips/s comes from ``bench/bench_data.py`` on a TF host (BENCHMARKS.md, "Data"). Beside
each step rate the table prints the clips/s each host core must deliver to keep up (``os.cpu_count()`` cores).
"""
import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"r2plus1d": "rgb_r2plus1d_32f_34_bert10", "i3d": "rgb_I3D64f_bert2",
          "slowfast": "rgb_slowfast64f_50_bert10_FRAB_late"}
# Forward GFLOPs per clip (BENCHMARKS.md "Models", keras_bert3d.models.flops); a training step is about 3x.
FORWARD_GFLOPS = {"r2plus1d": 304.7, "i3d": 222.5, "slowfast": 103.4}
# --smoke: narrow widths, one block per stage, 8-16 frames of 32x32, so a CPU trains them in seconds.
SMOKE = {"r2plus1d": dict(num_frames=8, image_size=32, stage_blocks=[1, 1, 1, 1], stage_filters=[4, 4, 8, 8],
                          stem_filters=[4, 4], num_heads=2),
         "i3d": dict(num_frames=16, image_size=32, stem_filters=[4, 4, 8], mixed_filters=[[2, 2, 4, 2, 2, 2]] * 9,
                     reduction_dim=8, num_heads=2),
         "slowfast": dict(num_frames=16, image_size=32, stage_blocks=[1, 1, 1, 1], slow_width=4, beta_inv=4,
                          reduction_dim=8, fast_reduction_dim=4, num_heads=2)}
PRECISIONS = ("mixed_bfloat16", "float32", "mixed_float16")
INPUTS = ("float32", "uint8")
NUM_CLASSES = 101
MARK = "BENCH_CASE "
GIB = 2 ** 30


def plan(models, precisions, batches, jits, inputs=("float32",)):
    """The cases in priority order (see the module docstring); jits[0] is the backend's default, inputs[0]
    the priority input (the other one runs after the float16 tier, then in every combination)."""
    first, other = jits[0], jits[1:]
    main, extra = inputs[0], tuple(inputs[1:])
    tiers = [("mixed_bfloat16", first, batches[0], main), ("float32", first, batches[0], main),
             ("mixed_float16", first, batches[0], main)]
    tiers += [("mixed_bfloat16", first, batches[0], name) for name in extra]
    tiers += [("mixed_bfloat16", jit, batches[0], main) for jit in other]
    tiers += [("mixed_bfloat16", first, batch, main) for batch in batches[1:]]
    tiers += list(itertools.product(PRECISIONS, jits, batches, inputs))
    cases, seen = [], set()
    for (precision, jit, batch, name), model in itertools.product(tiers, models):
        key = (model, precision, jit, batch, name)
        if precision in precisions and key not in seen:
            seen.add(key)
            cases.append(dict(model=model, precision=precision, jit=jit, batch=batch, input=name))
    return cases


def _device(backend):
    """(name, peak bytes or None, sync) for the backend's first device."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind, lambda: (device.memory_stats() or {}).get("peak_bytes_in_use"), None
    import torch

    if not torch.cuda.is_available():
        return "cpu", lambda: None, None
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.get_device_name(0), torch.cuda.max_memory_allocated, torch.cuda.synchronize


def run_case(case, args):
    """Builds, compiles and times one case in this process; returns its record."""
    import keras
    import numpy as np

    backend = keras.config.backend()
    float32 = case["precision"] == "float32"
    if backend == "jax":
        import jax

        # Cases share the compiled weight initialisers (one XLA program per shape) through a persistent cache.
        jax.config.update("jax_compilation_cache_dir", args.jax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        if float32:
            jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "torch":
        import torch

        torch.backends.cudnn.benchmark = True
        if float32:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    device, peak, sync = _device(backend)
    keras.config.set_dtype_policy(case["precision"])
    sys.path.insert(0, REPO)  # this clone's keras_bert3d
    from keras_bert3d.models import recipe
    from keras_bert3d.models.builder import build_model
    from keras_bert3d.models.clip_augmenter import augmented_model

    start = time.perf_counter()
    overrides = SMOKE[case["model"]] if args.smoke else {}
    model = build_model(MODELS[case["model"]], NUM_CLASSES, **overrides)
    optimizer = recipe.make_optimizer(model.recipe, model, gradient_accumulation_steps=1)
    if case["precision"] == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if case.get("input") == "uint8":  # augment="device": window resize, flip, normalise inside the step
        model = augmented_model(model)
    model.compile(optimizer=optimizer, loss=recipe.make_loss(), metrics=recipe.make_metrics(NUM_CLASSES),
                  jit_compile=case["jit"])  # the recipe's loss and top1/top5, on either model
    x = _inputs(model, case["batch"])
    y = keras.ops.convert_to_tensor(np.arange(case["batch"]) % NUM_CLASSES, "int32")
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    warmup_s = time.perf_counter() - start
    step, finish = _stepper(model, backend, (x, y, None), sync)
    rounds = []
    while len(rounds) < args.rounds and (not rounds or sum(rounds) * args.steps < args.time_s):
        start = time.perf_counter()
        for _ in range(args.steps):
            logs = step()
        finish()
        rounds.append((time.perf_counter() - start) / args.steps)
    step_s = statistics.median(rounds)
    peak_bytes = peak()
    return dict(case, status="ok", device=device, clips_per_s=case["batch"] / step_s, step_ms=1e3 * step_s,
                step_ms_rounds=[round(1e3 * r, 3) for r in rounds], steps_timed=args.steps * len(rounds),
                peak_gib=None if peak_bytes is None else peak_bytes / GIB, build_s=build_s, warmup_s=warmup_s,
                params=model.count_params(), loss=float(keras.ops.convert_to_numpy(logs["loss"])),
                versions=_versions(backend))


def _inputs(model, batch):
    """One batch on the device: normalised float clips (random normal), or for the augmented model uint8 boxes
    of the preprocessing's short side with random multi-scale windows and flips (what augment="device" sends)."""
    import keras
    import numpy as np

    if not isinstance(model.input, dict):
        return keras.random.normal((batch, *model.input.shape[1:]), seed=0)
    prep = model.layers[-1].preprocessing
    box = min(prep["frame_size"])
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (batch, prep["num_frames"], box, box, len(prep["mean"])), dtype=np.uint8)
    sizes = [int(box * r) for r in (1.0, 0.875, 0.75, 0.66)]
    windows = []
    for _ in range(batch):
        h, w = rng.choice(sizes, 2)
        windows.append([rng.integers(0, box - h + 1), rng.integers(0, box - w + 1), h, w, rng.integers(0, 2)])
    return {"frames": keras.ops.convert_to_tensor(frames),
            "windows": keras.ops.convert_to_tensor(np.asarray(windows, np.int32))}


def _versions(backend):
    import keras

    return {"keras": keras.__version__, backend: sys.modules[backend].__version__, "python": sys.version.split()[0]}


def _stepper(model, backend, data, sync):
    """(one training step returning its logs, wait for the device) through ``model.train_function``, as ``fit``
    loops."""
    model.make_train_function()
    if backend == "torch":
        return (lambda: model.train_function([data])), (sync or (lambda: None))
    import jax

    state = [tuple([v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
        model.metrics_variables))]

    def step():
        logs, state[0] = model.train_function(state[0], iter([data]))
        return logs

    return step, lambda: jax.block_until_ready(state[0])


def _run_child(case, args, timeout_s, log):
    """One case in a fresh process (its own session, so a timeout also ends compile workers)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    if case["precision"] == "float32":
        env["NVIDIA_TF32_OVERRIDE"] = "0"
    if args.smoke:
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, os.path.abspath(__file__), "--case", json.dumps(case), "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--rounds", str(args.rounds), "--time-s", str(args.time_s),
           "--jax-cache", args.jax_cache]
    cmd += ["--smoke"] if args.smoke else []
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        output, status = child.communicate(timeout=timeout_s)[0], None
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, status = child.communicate()[0], f"timeout after {timeout_s:.0f} s"
    if log:
        with open(log, "a") as f:
            f.write(f"==== {json.dumps(case)}\n{output}\n")
    lines = [line for line in output.splitlines() if line.startswith(MARK)]
    if lines and status is None:
        return json.loads(lines[-1][len(MARK):])
    tail = " | ".join(line for line in output.strip().splitlines()[-3:])
    return dict(case, status=status or f"error (exit {child.returncode}): {tail[-400:]}")


def ratios(records):
    """Each case's clips/s over the same model's float32, jit-off, batch-8 and float32-input figures, where
    those ran."""
    def key(r):
        return r["model"], r["precision"], r["jit"], r["batch"], r.get("input", "float32")

    rate = {key(r): r["clips_per_s"] for r in records if r["status"] == "ok"}
    out = {}
    for (model, precision, jit, batch, name), value in rate.items():
        against = {f"{precision} / float32": (model, "float32", jit, batch, name),
                   "jit on / off": (model, precision, False, batch, name) if jit else None,
                   f"batch {batch} / 8": (model, precision, jit, 8, name),
                   f"{name} input / float32 input": (model, precision, jit, batch, "float32")}
        for label, other in against.items():
            if other in rate and other != (model, precision, jit, batch, name):
                tag = "" if name == "float32" else f" input={name}"
                out[f"{model} {precision} jit={jit} batch={batch}{tag}: {label}"] = round(value / rate[other], 3)
    return out


def report(records, skipped, meta):
    print(f"\n{'model':9s} {'precision':15s} {'jit':5s} {'batch':>5s} {'input':>7s} {'clips/s':>8s} {'ms/step':>8s} "
          f"{'TFLOP/s':>8s} {'peak GiB':>8s} {'per core':>8s} {'warmup s':>8s}  status")
    cores = os.cpu_count() or 1
    for r in records:
        ok = r["status"] == "ok"
        gflops = None if meta["smoke"] else 3 * FORWARD_GFLOPS[r["model"]]
        cells = [f"{r['clips_per_s']:8.1f}", f"{r['step_ms']:8.1f}",
                 f"{r['clips_per_s'] * gflops / 1e3:8.1f}" if gflops else f"{'-':>8s}",
                 f"{r['peak_gib']:8.2f}" if r.get("peak_gib") is not None else f"{'-':>8s}",
                 f"{r['clips_per_s'] / cores:8.2f}", f"{r['warmup_s']:8.1f}"] if ok else [f"{'-':>8s}"] * 6
        print(f"{r['model']:9s} {r['precision']:15s} {str(r['jit']):5s} {r['batch']:5d} "
              f"{r.get('input', 'float32'):>7s} {' '.join(cells)}  "
              f"{r['status']}")
    print(f"(TFLOP/s: 3x the forward GFLOPs of BENCHMARKS 'Models' per clip; per core: clips/s each of the {cores} "
          f"host cores must deliver; the host pipeline's own rate comes from bench/bench_data.py on a TF host)")
    if skipped:
        print(f"not run (budget spent): {len(skipped)} cases, from "
              f"{skipped[0]['model']} {skipped[0]['precision']} jit={skipped[0]['jit']} batch={skipped[0]['batch']}")
    meta["ratios"] = ratios(records)
    for name, value in meta["ratios"].items():
        print(f"  {name}: {value}")
    print(json.dumps(dict(meta, cases=records, skipped=skipped)), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=240, help="wall time for all cases of this backend")
    parser.add_argument("--case-timeout-s", type=float, default=180)
    parser.add_argument("--min-case-s", type=float, default=40, help="start no case with less budget left")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default 8 16 (--smoke: 2)")
    parser.add_argument("--jit", nargs="+", default=None, choices=["on", "off"],
                        help="first = the priority one; default: the backend's jit_compile='auto' first")
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=INPUTS,
                        help="float32: normalised clips; uint8: augment='device' (uint8 boxes + windows, the "
                             "ClipAugmenter inside the step); the first is the priority one")
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2, help="untimed train_on_batch calls (compile, autotune)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time-s", type=float, default=8.0, help="stop timing rounds after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU, batch 2")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--log", help="append every child's output here")
    parser.add_argument("--jax-cache", help="JAX's persistent compilation cache (default: a new temporary folder)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(MARK + json.dumps(run_case(json.loads(args.case), args)), flush=True)
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend not in ("jax", "torch"):
        parser.error(f"set KERAS_BACKEND to jax or torch (received {backend!r}); on TensorFlow, "
                     f"bench/bench_train.py measures the training step")
    jits = [j == "on" for j in args.jit] if args.jit else [backend == "jax", backend != "jax"]
    batches = args.batches or ([2] if args.smoke else [8, 16])
    cases = plan(args.models, args.precisions, batches, jits, args.inputs)[:args.max_cases]
    own_cache = not args.jax_cache
    args.jax_cache = args.jax_cache or tempfile.mkdtemp(prefix="bench_device_jax_")
    start = time.perf_counter()
    records, skipped = [], []
    for case in cases:
        left = args.budget_s - (time.perf_counter() - start)
        if left < args.min_case_s:
            skipped.append(case)
            continue
        record = _run_child(case, args, min(args.case_timeout_s, left), args.log)
        records.append(record)
        rate = f"{record['clips_per_s']:.1f} clips/s" if record["status"] == "ok" else record["status"]
        print(f"[{time.perf_counter() - start:6.1f} s] {case['model']} {case['precision']} jit={case['jit']} "
              f"batch={case['batch']} input={case['input']}: {rate}", flush=True)
    meta = dict(bench="bench_device", backend=backend, smoke=args.smoke, budget_s=args.budget_s,
                elapsed_s=round(time.perf_counter() - start, 1), host_cores=os.cpu_count(),
                tf32="off for float32 (NVIDIA_TF32_OVERRIDE=0, jax highest matmul precision, torch allow_tf32=False)",
                host_pipeline="not measured here (no tf.data on the device host): bench/bench_data.py on a TF host")
    report(records, skipped, meta)
    if own_cache:
        shutil.rmtree(args.jax_cache, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(meta, cases=records, skipped=skipped), f, indent=1)


if __name__ == "__main__":
    main()
