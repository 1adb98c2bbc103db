"""The one place where keras_bert3d depends on which Keras backend runs it (TensorFlow, JAX or PyTorch).

Layers and models use ``keras.ops`` only and never ask for the backend; the few choices that differ
between backends are made here:

- **Grouped convolutions** (ResNeXt's ``conv_b``): Keras' TensorFlow backend compiles a grouped
  ``Conv3D`` with XLA (TF's CPU kernels reject ``groups > 1``), which is ~30x slower on a CPU than one
  convolution per group and leaves an XLA call in an exported graph; JAX (XLA's own
  ``feature_group_count``) and PyTorch (native ``groups``) convolve groups well on every device.
  `split_grouped_convolutions` says which form runs now; `grouped_convolutions` forces one (export forces
  ``"per_group"``, so a SavedModel runs on any CPU-only TF Serving whatever device traced it).
- **Work that only TensorFlow can do** (writing a SavedModel of TF graphs): from JAX or PyTorch the model
  travels through a ``.keras`` file (weights are backend-neutral) into a TensorFlow subprocess
  (`call_on_tensorflow`), so the export holds plain TF ops, no ``XlaCallModule``.
- **Devices**: `accelerator_visible` for every backend (``keras.distribution`` has no PyTorch backend).
- **Inference over a tf.data stream** (`inference_function`): a ``tf.function`` on TensorFlow, the
  backend's compiled ``predict_on_batch`` elsewhere.

Random key masking and dropout need nothing here: ``keras.random`` with a ``SeedGenerator`` runs on all
three (the draws differ between backends; the inference path has no randomness).
"""
import contextlib
import json
import os
import subprocess
import sys
import tempfile

import keras

GROUPED_MODES = ("auto", "per_group", "native")
_state = {"grouped": "auto"}


def name():
    """The running Keras backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return keras.config.backend()


def accelerator_visible():
    """True when the backend sees a GPU/TPU (the default device is then not the CPU)."""
    if name() == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return any(not str(d).lower().startswith("cpu") for d in keras.distribution.list_devices())


def split_grouped_convolutions():
    """True when a grouped convolution should run as one convolution per group now: forced by
    `grouped_convolutions("per_group")`, or (``"auto"``) on TensorFlow with no accelerator visible."""
    mode = _state["grouped"]
    if mode != "auto":
        return mode == "per_group"
    return name() == "tensorflow" and not accelerator_visible()


@contextlib.contextmanager
def grouped_convolutions(mode):
    """Within the block, grouped convolutions run ``"per_group"``, ``"native"`` or ``"auto"``.

    Graphs traced inside (``tf.function``, ``jax.jit``) keep the form chosen at trace time."""
    if mode not in GROUPED_MODES:
        raise ValueError(f"`mode` must be one of {list(GROUPED_MODES)}; received mode={mode!r}")
    previous, _state["grouped"] = _state["grouped"], mode
    try:
        yield
    finally:
        _state["grouped"] = previous


def inference_function(model):
    """``fn(clips) -> float32 numpy logits`` of ``model`` in inference mode, compiled once by the running
    backend: a ``tf.function`` of any batch size on TensorFlow (inputs stay TF tensors: tf.data hands them
    over without a copy); ``predict_on_batch`` (``jax.jit`` on JAX, eager on PyTorch) elsewhere."""
    import numpy as np

    if name() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, *model.input.shape[1:]], tf.float32)
        forward = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), input_signature=[spec])
        return lambda clips: forward(clips).numpy()
    return lambda clips: np.asarray(model.predict_on_batch(np.asarray(clips)), np.float32)


def per_group_conv(x, kernel, groups, strides):
    """``conv(x, kernel)`` with ``groups`` groups ('valid' padding), as ``groups`` convolutions of the
    channel slices; ``kernel`` is the grouped kernel ``(kT, kH, kW, C_in / groups, C_out)``."""
    kernel = keras.ops.cast(kernel, x.dtype)
    parts = zip(keras.ops.split(x, groups, axis=-1), keras.ops.split(kernel, groups, axis=-1))
    return keras.ops.concatenate([keras.ops.conv(a, k, strides=strides, padding="valid") for a, k in parts],
                                 axis=-1)


_WORKER = """
import json, sys
sys.path.insert(0, sys.argv.pop(1))  # `python -I` ignores PYTHONPATH: the parent's keras_bert3d, named by it
import keras
import keras_bert3d  # registers the serializable classes
module_name, function_name = sys.argv[1].rsplit(":", 1)
import importlib
function = getattr(importlib.import_module(module_name), function_name)
with open(sys.argv[3], encoding="utf-8") as f:
    kwargs = json.load(f)
model = keras.saving.load_model(sys.argv[2], compile=False)
result = function(model, **kwargs)
with open(sys.argv[4], "w", encoding="utf-8") as f:
    json.dump(result, f)
"""


TENSORFLOW_CALL_TIMEOUT = 3600  # seconds for one subprocess (a full-size export takes minutes)


def call_on_tensorflow(model, function, timeout=TENSORFLOW_CALL_TIMEOUT, **kwargs):
    """``function(model, **kwargs)`` run by the TensorFlow backend, whatever backend holds ``model``.

    On TensorFlow it is a plain call. Elsewhere ``model`` is saved to a temporary ``.keras`` file, loaded
    by a ``KERAS_BACKEND=tensorflow`` subprocess that calls ``function`` (``"package.module:name"``) there;
    ``kwargs`` and the result must be JSON values. The subprocess' error output is raised on failure.
    The subprocess runs ``python -I`` (isolated: no ``PYTHON*`` variables, user site or current folder on its
    path; only the folder this keras_bert3d comes from) and is killed after ``timeout`` seconds (a RuntimeError).
    """
    module_name, function_name = function.rsplit(":", 1)
    if name() == "tensorflow":
        import importlib

        return getattr(importlib.import_module(module_name), function_name)(model, **kwargs)
    with tempfile.TemporaryDirectory(prefix="bert3d_tf_") as tmp:
        model_path, args_path, out_path = (os.path.join(tmp, n) for n in ("model.keras", "kwargs.json",
                                                                         "result.json"))
        model.save(model_path)
        with open(args_path, "w", encoding="utf-8") as f:
            json.dump(kwargs, f)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = [sys.executable, "-I", "-c", _WORKER, package_root, function, model_path, args_path, out_path]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{function} on the TensorFlow backend did not finish within {timeout} s "
                               "(the subprocess was stopped)") from None
        if done.returncode:
            raise RuntimeError(f"{function} on the TensorFlow backend failed (exit {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        with open(out_path, encoding="utf-8") as f:
            return json.load(f)
