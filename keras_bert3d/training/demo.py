"""The main job on the embedded dataset: BERT pooling against TGAP where only the order of events tells.

    python -m training.demo [--out demo_out] [--epochs N] [--videos-per-class N]

1. writes the synthetic ordered-events dataset (real mp4/avi videos, UCF101 layout; `bert3d synth --demo`),
2. trains the same small R(2+1)D twice, with BERT pooling and with temporal global average pooling
   (training/configs/synthetic_bert.yaml and synthetic_tgap.yaml: same budget, optimiser and seed),
3. evaluates both with the reference's multi-clip x 10-crop protocol and prints one line per model,
4. exports the better one as a SavedModel for TF Serving (saved_models/<name>/<version>/).

Each class shows the same three coloured events; only their order differs. Each temporal token of the small
R(2+1)D sees at most one event, so averaging the tokens (TGAP) loses the order and attention over ordered
tokens keeps it (keras_bert3d.data.synthetic.DEMO). Every step resumes: run it again and it continues.
"""
import json
import os
import shutil
import time

from keras_bert3d.training import run_folder

POOLINGS = ("bert", "tgap")


def make_dataset(root, videos_per_class, seed):
    """Writes the demo's dataset into ``root`` unless it holds one with these settings; True if written."""
    from keras_bert3d.data.synthetic import DEMO, write_synthetic_dataset

    settings = dict(DEMO, videos_per_class=videos_per_class, seed=seed)
    marker = os.path.join(root, "synthetic.json")
    if os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        if all(info.get(key) == (list(value) if isinstance(value, tuple) else value)
               for key, value in settings.items()):
            return False
        shutil.rmtree(root)  # another version's videos: none of them may stay
    write_synthetic_dataset(root, **settings)
    return True


def clear_runs(runs_dir):
    """Removes the demo's runs (trained on a dataset that has just been replaced); returns their folders."""
    stale = [os.path.join(runs_dir, f"synthetic_{pooling}") for pooling in POOLINGS]
    stale = [path for path in stale if os.path.isdir(path)]
    for path in stale:
        shutil.rmtree(path)
    return stale


def train_and_evaluate(pooling, data_root, runs_dir, epochs, seed, configs_dir):
    from keras_bert3d.training.config_files import load_config
    from keras_bert3d.training.evaluate import evaluate
    from keras_bert3d.training.train import train

    overrides = [f"data.root={data_root}", f"output_dir={runs_dir}", f"train.seed={seed}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    config = load_config(os.path.join(configs_dir, f"synthetic_{pooling}.yaml"), overrides)
    start = time.perf_counter()
    summary = train(config)
    minutes = (time.perf_counter() - start) / 60
    run_dir = os.path.join(runs_dir, config["name"])
    metrics = evaluate(run_dir, clips="cover", crops=10, progress=False)
    return run_dir, summary, metrics, minutes


def export_better(results, export_dir):
    """Exports the model of the pooling with the better test top-1 (``results``: pooling -> what
    `train_and_evaluate` returned) as a SavedModel under ``export_dir``; returns ``(pooling, path)``."""
    from keras_bert3d.serving.export import export_saved_model
    from keras_bert3d.training.evaluate import load_model

    better = max(POOLINGS, key=lambda p: results[p][2]["top1"])
    run_dir = results[better][0]
    with open(os.path.join(run_dir, run_folder.CLASS_NAMES)) as f:
        class_names = json.load(f)
    model = load_model(os.path.join(run_dir, run_folder.BEST))
    path = export_saved_model(model, os.path.join(export_dir, f"synthetic_{better}"), class_names=class_names)
    return better, path
