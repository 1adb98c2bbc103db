"""ClipAugmenter on one Keras backend (KERAS_BACKEND), with TensorFlow blocked on JAX (torch._dynamo probes for
it at import, so not there): reads frames.npy, windows.npy and
prep.json from the folder in argv[1], writes out.<backend>.npy (eager) and out.<backend>.compiled.npy (jax.jit;
eager again on torch). Run by test_clip_augmenter_backends.py."""
import importlib.abc
import json
import os
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError(f"{name}: the device path runs without TensorFlow")


if os.environ.get("KERAS_BACKEND") == "jax":
    sys.meta_path.insert(0, NoTensorFlow())

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_bert3d.models.clip_augmenter import ClipAugmenter  # noqa: E402

folder = sys.argv[1]
backend = keras.config.backend()
with open(os.path.join(folder, "prep.json"), encoding="utf-8") as f:
    layer = ClipAugmenter.from_preprocessing(json.load(f))
inputs = {"frames": np.load(os.path.join(folder, "frames.npy")), "windows": np.load(os.path.join(folder, "windows.npy"))}
np.save(os.path.join(folder, f"out.{backend}.npy"), keras.ops.convert_to_numpy(layer(inputs)))
if backend == "jax":
    import jax

    compiled = jax.jit(lambda x: layer(x))(inputs)
else:
    compiled = layer(inputs)
np.save(os.path.join(folder, f"out.{backend}.compiled.npy"), keras.ops.convert_to_numpy(compiled))
print(f"ok {backend}")
