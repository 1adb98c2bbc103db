"""Runs worker.py on each backend in a subprocess and compares its logits with TensorFlow's."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

BACKENDS = ("jax", "torch")
TOLERANCE = 1e-4  # relative max abs difference of the logits
HERE = os.path.dirname(os.path.abspath(__file__))


def installed(backend):
    return importlib.util.find_spec(backend) is not None


def write_reference(folder, presets, num_classes, keras_files=(), batch=2):
    """TensorFlow side (this process): weights, inputs and logits of every preset; .keras files."""
    import keras

    from keras_bert3d.models.builder import build_model

    for i, (name, overrides) in enumerate(presets.items()):
        keras.utils.set_random_seed(i)
        model = build_model(name, num_classes, **overrides)
        shape = tuple(model.input.shape[1:])
        x = np.random.default_rng(i).normal(size=(batch, *shape)).astype("float32")
        np.save(os.path.join(folder, f"{name}.input.npy"), x)
        np.save(os.path.join(folder, f"{name}.tensorflow.npy"), np.asarray(model.predict_on_batch(x)))
        model.save_weights(os.path.join(folder, f"{name}.weights.h5"))
        if name in keras_files:
            model.save(os.path.join(folder, f"{name}.keras"))


def run_backends(folder, presets, num_classes, keras_files=(), timeout=2400):
    """Start one worker per installed backend (in parallel) and wait; returns {backend: error or None}."""
    task = os.path.join(folder, "task.json")
    with open(task, "w", encoding="utf-8") as f:
        json.dump({"dir": str(folder), "presets": presets, "num_classes": num_classes,
                   "keras_files": list(keras_files)}, f)
    procs = {}
    for backend in BACKENDS:
        if not installed(backend):
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
        # XLA's LLVM at -O0 compiles ~3x faster; the arithmetic stays IEEE float32.
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
        procs[backend] = subprocess.Popen([sys.executable, os.path.join(HERE, "worker.py"), task], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    errors = {}
    for backend, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = f"{backend} worker: no answer in {timeout} s\n" + (proc.communicate()[0] or "")
        errors[backend] = None if proc.returncode == 0 else out[-4000:]
    return errors


def relative_difference(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def check(folder, errors, backend, name, suffix=""):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (pip install -e '.[{'jax' if backend == 'jax' else 'torch'}]')")
    assert errors.get(backend) is None, f"the {backend} worker failed:\n{errors.get(backend)}"
    reference = np.load(os.path.join(folder, f"{name}.tensorflow.npy"))
    other = np.load(os.path.join(folder, f"{name}.{backend}{suffix}.npy"))
    assert other.shape == reference.shape
    diff = relative_difference(other, reference)
    assert diff < TOLERANCE, f"{name} on {backend}{suffix}: relative max abs difference {diff:.2e}"
    return diff
