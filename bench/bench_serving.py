"""SavedModel latency next to the Keras model's: same machine, same run, batch 1 by default.

For each preset (random initialisation, ``NUM_CLASSES`` classes, full size unless ``--override``) the
model is built, exported with `export_saved_model` to a temporary folder and reloaded with
``tf.saved_model.load``; then three calls are timed in alternating rounds (A B C, then C B A, ...), so
load changes on a shared machine hit them alike:

- ``keras``: ``model(x, training=False)`` inside a ``tf.function`` (as bench_models.py), x normalised;
- ``predict_normalized``: the SavedModel signature on the same x;
- ``serving_default``: the SavedModel signature on a uint8 clip at the preset's ``frame_size``, so it
  also resizes, crops and normalises in the graph (what a TF Serving client sends).

The table gives the median ms per call, the spread, and each SavedModel call's time / the Keras call's,
median [quartiles] of the per-round ratios; the export and load times and the largest difference of the
probabilities (SavedModel vs Keras, same normalised input) follow. Absolute times do not transfer.

    python bench/bench_serving.py                                   # rgb_r2plus1d_32f_34_bert10, full size
    python bench/bench_serving.py --models rgb_I3D64f_bert2 --seconds 30 --json out.json
    python bench/bench_serving.py --override num_frames=8 --override image_size=32 --seconds 2   # a quick look
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bert3d.models.builder import build_model  # noqa: E402
from keras_bert3d.serving.export import export_saved_model  # noqa: E402
from keras_bert3d.serving.signatures import NORMALIZED_SIGNATURE, SERVING_SIGNATURE  # noqa: E402

NUM_CLASSES = 51
PATHS = ("keras", NORMALIZED_SIGNATURE, SERVING_SIGNATURE)


def fetch(outputs):
    return keras.tree.map_structure(np.asarray, outputs)


def calls(model, loaded, batch_size, seed=0):
    """``{path: zero-argument callable}`` and the normalised input they share."""
    prep = model.preprocessing
    rng = np.random.default_rng(seed)
    channels, frames, size = len(prep["mean"]), prep["num_frames"], prep["crop_size"]
    clip = tf.constant(rng.standard_normal((batch_size, frames, size, size, channels), dtype=np.float32))
    raw = tf.constant(rng.integers(0, 256, (batch_size, frames, *prep["frame_size"], channels), dtype=np.uint8))
    forward = tf.function(lambda x: model(x, training=False))
    normalized, serving = loaded.signatures[NORMALIZED_SIGNATURE], loaded.signatures[SERVING_SIGNATURE]
    return {"keras": lambda: forward(clip), NORMALIZED_SIGNATURE: lambda: normalized(clips=clip),
            SERVING_SIGNATURE: lambda: serving(clips=raw)}, clip


def measure(name, seconds, batch_size, overrides, min_rounds=5):
    model = build_model(name, NUM_CLASSES, **overrides)
    row = {"name": name, "overrides": overrides, "batch_size": batch_size,
           "input": list(model.input.shape[1:]), "frame_size": model.preprocessing["frame_size"]}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_saved_model(model, os.path.join(tmp, name), warmup=False)
        row["export_s"] = time.perf_counter() - start
        start = time.perf_counter()
        loaded = tf.saved_model.load(path)
        row["load_s"] = time.perf_counter() - start
        fns, clip = calls(model, loaded, batch_size)
        keras_probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(clip, training=False)))
        saved_probs = loaded.signatures[NORMALIZED_SIGNATURE](clips=clip)["probabilities"].numpy()
        row["max_abs_diff_probabilities"] = float(np.abs(keras_probs - saved_probs).max())
        for fn in fns.values():  # warm-up: the first calls trace and optimise
            fetch(fn())
            fetch(fn())
        start = time.perf_counter()
        for fn in fns.values():
            fetch(fn())
        rounds = max(min_rounds, int(round(len(fns) * seconds / (time.perf_counter() - start))))
        times = {key: [] for key in fns}
        for k in range(rounds):
            for key in (PATHS if k % 2 == 0 else PATHS[::-1]):
                start = time.perf_counter()
                fetch(fns[key]())
                times[key].append(time.perf_counter() - start)
    row["rounds"] = rounds
    row["times"] = {key: [round(t, 5) for t in values] for key, values in times.items()}
    row["ms"] = {key: 1e3 * statistics.median(values) for key, values in times.items()}
    row["spread_pct"] = {key: 100 * (max(v) - min(v)) / statistics.median(v) for key, v in times.items()}
    for key in PATHS[1:]:
        ratios = sorted(b / a for a, b in zip(times["keras"], times[key]))
        row[f"ratio_{key}"] = [statistics.median(ratios), ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]]
    del loaded, model
    keras.backend.clear_session()
    return row


def format_rows(rows):
    lines = []
    for r in rows:
        batch, shape = r["batch_size"], "x".join(str(d) for d in r["input"])
        lines.append(f"{r['name']} (batch {batch}, clip {shape}, uint8 frames {r['frame_size'][0]}x"
                     f"{r['frame_size'][1]}{', overrides ' + json.dumps(r['overrides']) if r['overrides'] else ''})")
        lines.append(f"  {'call':<20} {'ms/call':>9} {'spread %':>9} {'x keras [IQR]':>22}")
        for key in PATHS:
            ratio = r.get(f"ratio_{key}")
            text = f"{ratio[0]:.3f} [{ratio[1]:.3f}-{ratio[2]:.3f}]" if ratio else "1"
            lines.append(f"  {key:<20} {r['ms'][key]:9.1f} {r['spread_pct'][key]:9.0f} {text:>22}")
        lines.append(f"  rounds {r['rounds']}; export {r['export_s']:.1f} s, load {r['load_s']:.1f} s; "
                     f"max |probabilities SavedModel - Keras| = {r['max_abs_diff_probabilities']:.2e}")
    return "\n".join(lines)


def _override(text):
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"an override is KEY=VALUE (VALUE in JSON); received {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rgb_r2plus1d_32f_34_bert10"])
    parser.add_argument("--seconds", type=float, default=20.0, help="about this long per call kind and model")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--override", type=_override, action="append", default=[], help="KEY=VALUE of build_model")
    parser.add_argument("--json", help="also write the rows and the machine to this file")
    args = parser.parse_args(argv)
    machine = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
               "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "load_before": list(os.getloadavg())}
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"load average {machine['load_before'][0]:.2f}", flush=True)
    rows = [measure(name, args.seconds, args.batch_size, dict(args.override)) for name in args.models]
    machine["load_after"] = list(os.getloadavg())
    machine["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(format_rows(rows))
    print(f"load average after: {machine['load_after'][0]:.2f}; peak RSS {machine['peak_rss_gib']:.1f} GiB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
