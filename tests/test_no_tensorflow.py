"""The model code imports and trains without TensorFlow: an accelerator host with Keras and JAX only (issue 20,
bench/bench_device.py). A fresh process on JAX, where any ``import tensorflow`` raises ImportError, imports the
package and its model layers, builds a tiny preset, calls it and takes one training step with its recipe."""
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import importlib.abc, json, sys


class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_serving", "tf_keras"):
            raise ImportError(f"{name}: this host has no TensorFlow")


sys.meta_path.insert(0, NoTensorFlow())
try:
    import tensorflow  # noqa: F401
    blocked = False
except ImportError:
    blocked = True

import keras
import numpy as np

import keras_bert3d
from keras_bert3d import backbones, layers, models, optimizers, presets  # noqa: F401
from keras_bert3d.models import recipe  # noqa: F401
from tiny_presets import tiny_overrides

name = "rgb_r2plus1d_32f_34_bert10"
model = keras_bert3d.build_model(name, 5, **tiny_overrides(name))
x = np.random.default_rng(0).normal(size=(2, *model.input.shape[1:])).astype("float32")
logits = keras.ops.convert_to_numpy(model(x))
model.compile()  # the preset's reference recipe
loss = model.train_on_batch(x, np.array([0, 3]), return_dict=True)["loss"]
print("RESULT " + json.dumps({
    "blocked": blocked, "backend": keras.config.backend(), "logits": logits.tolist(), "loss": float(loss),
    "public": sorted(n for n in keras_bert3d.__all__ if hasattr(keras_bert3d, n)), "all": sorted(keras_bert3d.__all__),
    "tensorflow_modules": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")}))
'''


def test_models_import_build_and_train_without_tensorflow():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests", "models")]))
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["blocked"], "the import hook did not block tensorflow"
    assert result["backend"] == "jax"
    assert result["tensorflow_modules"] == []
    assert result["public"] == result["all"] and "VideoClassifier" in result["all"]
    logits = np.asarray(result["logits"])
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
    assert np.isfinite(result["loss"]) and result["loss"] > 0
