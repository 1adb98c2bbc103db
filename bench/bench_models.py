"""Forward speed of the RGB presets: clips/s, GFLOPs per clip, achieved GFLOP/s, and BERT's cost.

Each preset runs at its own input size, batch 1, float32: ``model(x, training=False)``
inside a ``tf.function`` (no XLA), warmed up, then called for about ``--seconds`` seconds;
the table gives the median time of one clip. The FLOPs are counted analytically
(``keras_bert3d.models.flops``). The machine's float32 matrix-multiply rate (an N x N
``tf.linalg.matmul``, best of several calls), measured before and after the models, is the
practical limit the achieved GFLOP/s are compared with.

BERT's cost, two ways, both measured in rounds so that load changes on a shared machine
cancel (the target is BERT pooling <= 3 % of the forward time):

- each ``BERTPooling`` layer alone, on a token tensor of its input shape, called
  ``BERT_REPEATS`` times in every round next to one forward pass of the whole model:
  the share is the median over rounds of (BERT time / forward time);
- the forward time of each BERT preset against its TGAP baseline (``baseline_of``): the two
  models are built together and called alternately (A B, then B A), and the ratio is the
  median of the per-round ratios. FRAB/FRMB presets also change the backbone, so their ratio
  is not BERT alone. ``--no-pairs`` builds one model at a time instead (less memory, but the
  ratio then compares runs made minutes apart).

The numbers are ratios from one run on one machine, whose load average is printed before
and after; absolute times do not transfer.

    python bench/bench_models.py                          # every RGB preset
    python bench/bench_models.py --models rgb_r2plus1d_32f_34_bert10 --seconds 10 --json out.json
"""
import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bert3d.models.builder import build_model, list_models  # noqa: E402
from keras_bert3d.models.describe import count_parameters  # noqa: E402
from keras_bert3d.models.flops import flops_by_layer  # noqa: E402
from keras_bert3d.presets import PRESETS  # noqa: E402

NUM_CLASSES = 51
TARGET_BERT_SHARE = 0.03
BERT_REPEATS = 10  # BERTPooling calls per round (one call is ~1 ms, a forward pass ~1 s)
R2PLUS1D_64F_BASELINE = "rgb_r2plus1d_32f_34@64f"
# Extra entries: a preset built with overrides (the 64-frame R(2+1)D TGAP baseline).
VARIANTS = {R2PLUS1D_64F_BASELINE: ("rgb_r2plus1d_32f_34", {"num_frames": 64})}


def baseline_of(name):
    """The TGAP model a BERT preset is compared with (None for a non-BERT preset)."""
    if PRESETS.get(name, {}).get("classifier", {}).get("pooling") != "bert":
        return None
    fixed = {
        "rgb_r2plus1d_32f_34_bert10": "rgb_r2plus1d_32f_34",
        "rgb_r2plus1d_64f_34_bert10": R2PLUS1D_64F_BASELINE,
        "rgb_resneXt3D64f101_bert10_FRMB": "rgb_resneXt3D64f101_FRMB_adamw",
        "rgb_resneXt3D64f101_bert10_FRAB": "rgb_resneXt3D64f101",
    }
    if name in fixed:
        return fixed[name]
    if name.startswith("rgb_I3D64f_bert2"):
        return "rgb_I3D64f"
    if name.startswith("rgb_slowfast64f_50_bert10"):
        return "rgb_slowfast64f_50"
    return None


def fetch(outputs):
    return keras.tree.map_structure(np.asarray, outputs)


def matmul_gflops(size, repeats=20):
    """float32 ``size`` x ``size`` matmul rate in GFLOP/s, best of ``repeats`` calls."""
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    b = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.linalg.matmul(x, y)))
    fetch(matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fetch(matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


class Bench:
    """One built model with its forward function, input, FLOPs and BERT layers' functions."""

    def __init__(self, name):
        preset, overrides = VARIANTS.get(name, (name, {}))
        self.model = build_model(preset, NUM_CLASSES, **overrides)
        self.row = {"name": name, "baseline": baseline_of(name), "params": count_parameters(self.model),
                    "input": list(self.model.input.shape[1:])}
        by_layer = flops_by_layer(self.model)
        berts = self.model.bert_layers()
        self.row["gflops"] = sum(by_layer.values()) / 1e9
        self.row["bert_gflops"] = sum(v for k, v in by_layer.items() if k.split("/")[0] in berts) / 1e9
        rng = np.random.default_rng(0)
        self.clip = tf.constant(rng.standard_normal((1, *self.row["input"]), dtype=np.float32))
        self.forward = tf.function(lambda clip: self.model(clip, training=False))
        # As the classifier calls them: the attention probabilities are a second output.
        self.berts = [(tf.function(lambda t, layer=layer: layer(t, training=False, return_attention_scores=True)),
                       tf.constant(rng.standard_normal((1, *layer.input.shape[1:]), dtype=np.float32)))
                      for layer in berts.values()]
        self.times, self.bert_times = [], []

    def warm_up(self):
        for _ in range(2):  # the first call traces
            fetch(self.forward(self.clip))
            for pool, tokens in self.berts:
                fetch(pool(tokens))

    def run_round(self):
        start = time.perf_counter()
        fetch(self.forward(self.clip))
        self.times.append(time.perf_counter() - start)
        if self.berts:
            start = time.perf_counter()
            for _ in range(BERT_REPEATS):
                for pool, tokens in self.berts:
                    fetch(pool(tokens))
            self.bert_times.append((time.perf_counter() - start) / BERT_REPEATS)

    def finish(self):
        row, times = self.row, self.times
        row.update(runs=len(times), seconds=statistics.median(times), seconds_min=min(times),
                   times=[round(t, 5) for t in times])
        row["clips_per_s"] = 1.0 / row["seconds"]
        row["gflop_per_s"] = row["gflops"] / row["seconds"]
        row["bert_seconds"] = statistics.median(self.bert_times) if self.berts else None
        row["bert_share"] = (statistics.median(b / t for b, t in zip(self.bert_times, times))
                             if self.berts else None)
        return row


def measure(names, seconds, min_rounds=3):
    """Build ``names`` together, call them in alternating rounds for ~``seconds`` each; their rows.

    Rounds alternate the order (A B, B A, ...). With two models (a BERT preset last, its
    baseline first) the BERT row gets ``ratio_rounds``: its time / the baseline's, per round.
    """
    benches = [Bench(name) for name in names]
    try:
        for bench in benches:
            bench.warm_up()
        start = time.perf_counter()
        for bench in benches:
            bench.run_round()
        rounds = max(min_rounds, int(round(len(benches) * seconds / (time.perf_counter() - start))))
        for bench in benches:  # the estimating round was one more warm-up
            bench.times.clear()
            bench.bert_times.clear()
        for k in range(rounds):
            for bench in benches if k % 2 == 0 else benches[::-1]:
                bench.run_round()
        rows = [bench.finish() for bench in benches]
        if len(benches) == 2:
            base, bert = benches
            rows[1]["ratio_rounds"] = [round(b / a, 4) for a, b in zip(base.times, bert.times)]
        return rows
    finally:
        del benches
        keras.backend.clear_session()
        gc.collect()


def plan(names, pairs):
    """The groups to measure: [baseline, BERT preset] pairs and single models."""
    if not pairs:
        return [[name] for name in names]
    groups, paired = [], set()
    for name in names:
        base = baseline_of(name)
        if base in names:
            groups.append([base, name])
            paired.add(base)
    return [[name] for name in names if baseline_of(name) not in names and name not in paired] + groups


def merge(rows):
    """One row per model: a baseline measured in several pairs gets all its times pooled."""
    merged = {}
    for row in rows:
        if "error" in row or row["name"] not in merged:
            merged.setdefault(row["name"], row)
            continue
        keep = merged[row["name"]]
        keep["times"] = keep["times"] + row["times"]
        keep.update(runs=len(keep["times"]), seconds=statistics.median(keep["times"]),
                    seconds_min=min(keep["times"]))
        keep["clips_per_s"] = 1.0 / keep["seconds"]
        keep["gflop_per_s"] = keep["gflops"] / keep["seconds"]
    for row in merged.values():
        base = merged.get(row.get("baseline"))
        if "error" in row or base is None or "error" in base:
            continue
        if "ratio_rounds" not in row:  # measured apart (--no-pairs): compare the medians
            row["ratio_rounds"] = [row["seconds"] / base["seconds"]]
        ratios = sorted(row["ratio_rounds"])
        row["ratio"] = statistics.median(ratios)
        row["ratio_iqr"] = [ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]]
    return merged


def ratio_text(row):
    if "ratio" not in row:
        return "-"
    if len(row["ratio_rounds"]) == 1:
        return f"{row['ratio']:.3f}"
    return f"{row['ratio']:.3f} [{row['ratio_iqr'][0]:.3f}-{row['ratio_iqr'][1]:.3f}]"


def format_table(rows, peak):
    header = ("model", "input TxHxWxC", "GFLOPs", "ms/clip", "runs", "spread %", "clips/s", "GFLOP/s", "% mm",
              "BERT ms", "BERT %t", "BERT %F", "x TGAP [IQR]")
    lines = [header]
    for r in rows:
        if "error" in r:
            lines.append((r["name"], "failed: " + r["error"][:60]) + ("",) * (len(header) - 2))
            continue
        bert = r["bert_seconds"] is not None
        lines.append((
            r["name"], "x".join(str(d) for d in r["input"]), f"{r['gflops']:.1f}", f"{1e3 * r['seconds']:.0f}",
            str(r["runs"]), f"{100 * (max(r['times']) - min(r['times'])) / r['seconds']:.0f}",
            f"{r['clips_per_s']:.2f}", f"{r['gflop_per_s']:.0f}", f"{100 * r['gflop_per_s'] / peak:.0f}",
            f"{1e3 * r['bert_seconds']:.2f}" if bert else "-", f"{100 * r['bert_share']:.2f}" if bert else "-",
            f"{100 * r['bert_gflops'] / r['gflops']:.3f}" if bert else "-",
            ratio_text(r)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


LEGEND = ("ms/clip: median of the runs (batch 1); spread: (slowest - fastest run) / median; GFLOP/s: GFLOPs / "
          "median time; % mm: of the best float32 matmul rate ({peak:.0f} GFLOP/s); BERT ms: the BERTPooling "
          "layer(s) alone on their tokens; BERT %t: of the model's forward time, median of per-round ratios; "
          "BERT %F: of its FLOPs; x TGAP: forward time / its TGAP baseline's, median [quartiles] of the "
          "per-round ratios ({how}).")


def summarize(rows, peak):
    ok = [r for r in rows if "error" not in r]
    berts = [r for r in ok if r["bert_share"] is not None]
    lines = []
    if ok:
        lines.append(f"float32 matmul limit: {peak:.0f} GFLOP/s; the models reach "
                     f"{min(r['gflop_per_s'] for r in ok) / peak:.0%}-{max(r['gflop_per_s'] for r in ok) / peak:.0%}"
                     " of it.")
    if berts:
        worst = max(berts, key=lambda r: r["bert_share"])
        over = [r["name"] for r in berts if r["bert_share"] > TARGET_BERT_SHARE]
        lines.append(f"BERT pooling share of the forward time: {min(r['bert_share'] for r in berts):.2%}"
                     f"-{worst['bert_share']:.2%} (max {worst['name']}); target <= {TARGET_BERT_SHARE:.0%}: "
                     + ("met by every BERT preset." if not over else f"NOT met by {', '.join(over)}."))
        ratios = [r for r in berts if "ratio" in r]
        if ratios:
            lo, hi = min(ratios, key=lambda r: r["ratio"]), max(ratios, key=lambda r: r["ratio"])
            lines.append(f"BERT preset / TGAP baseline forward time: {lo['ratio']:.3f} ({lo['name']}) to "
                         f"{hi['ratio']:.3f} ({hi['name']}); FRAB/FRMB presets also change the backbone.")
    failed = [r["name"] for r in rows if "error" in r]
    if failed:
        lines.append(f"failed: {', '.join(failed)}")
    return "\n".join(lines)


def main(argv=None):
    rgb = [n for n in list_models() if n.startswith("rgb_")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=rgb, metavar="NAME",
                        help="presets to time (default: every RGB preset); the TGAP baseline of each BERT "
                             "preset is added unless --no-baselines")
    parser.add_argument("--no-baselines", action="store_true", help="do not add the TGAP baselines")
    parser.add_argument("--no-pairs", action="store_true",
                        help="build one model at a time (a BERT preset is not timed alongside its baseline)")
    parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per model (default 15)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    for name in args.models:
        if name not in PRESETS and name not in VARIANTS:
            parser.error(f"unknown model {name!r}; choose from {rgb + list(VARIANTS)}")
    names = list(dict.fromkeys(args.models))
    if not args.no_baselines:
        for name in list(names):
            base = baseline_of(name)
            if base and base not in names:
                names.insert(names.index(name), base)

    info = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "cpus": os.cpu_count(), "load_before": [round(v, 2) for v in os.getloadavg()],
            "seconds_per_model": args.seconds, "pairs": not args.no_pairs, "bert_repeats": BERT_REPEATS}
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"load average before: {info['load_before']}", flush=True)
    info["matmul_gflops_before"] = matmul_gflops(args.matmul_size)
    print(f"matmul {args.matmul_size}^2 float32: {info['matmul_gflops_before']:.0f} GFLOP/s", flush=True)

    measured = []
    for group in plan(names, not args.no_pairs):
        try:
            rows = measure(group, args.seconds)
        except Exception as error:  # a preset that fails to build or run is reported, not fatal
            rows = [{"name": name, "error": f"{type(error).__name__}: {error}"} for name in group]
        measured += rows
        print("  " + "; ".join(f"{r['name']}: FAILED {r['error'][:200]}" if "error" in r else
                               f"{r['name']}: {1e3 * r['seconds']:.0f} ms/clip ({r['runs']} runs)" for r in rows),
              flush=True)

    info["matmul_gflops_after"] = matmul_gflops(args.matmul_size)
    info["load_after"] = [round(v, 2) for v in os.getloadavg()]
    info["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    peak = info["matmul_gflops"] = max(info["matmul_gflops_before"], info["matmul_gflops_after"])
    merged = merge(measured)
    rows = [merged[name] for name in names if name in merged]
    print(f"\nmatmul {args.matmul_size}^2 float32 after: {info['matmul_gflops_after']:.0f} GFLOP/s; "
          f"load average after: {info['load_after']}; peak memory {info['peak_rss_gib']:.1f} GiB\n")
    print(format_table(rows, peak))
    how = "timed apart, ratio of medians" if args.no_pairs else "the two models called alternately"
    print("\n" + LEGEND.format(peak=peak, how=how) + "\n")
    print(summarize(rows, peak))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "models": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
