"""One backend's side of the cross-backend tests: run in a subprocess with KERAS_BACKEND set.

``python worker.py TASK.json``: TASK has ``dir`` (the reference's files), ``presets`` ({name: overrides}),
``keras_files`` (names whose TF-saved ``<name>.keras`` this backend loads and saves again as
``<name>.<backend>.keras``). Writes ``<name>.<backend>.npy`` (logits from ``<name>.weights.h5``) and
``<name>.<backend>.keras.npy`` (logits of the loaded ``.keras`` file), then ``done.<backend>.json``.
"""
import json
import os
import sys
import time

import keras
import numpy as np

from keras_bert3d.models.builder import build_model


def main(task_path):
    with open(task_path, encoding="utf-8") as f:
        task = json.load(f)
    folder, backend = task["dir"], keras.config.backend()
    timings = {}
    for name, overrides in task["presets"].items():
        start = time.time()
        if backend == "jax":
            # Deferred initialisation (variables get their values from the file): JAX would otherwise
            # compile one random initialiser per weight shape, ~0.5 s each on this CPU. PyTorch and the
            # .keras loads below build the ordinary way.
            with keras.StatelessScope(initialize_variables=False):
                model = build_model(name, task["num_classes"], **overrides)
            model.load_weights(os.path.join(folder, f"{name}.weights.h5"))
            keras.utils.clear_session()  # forget the deferred list: every weight came from the file
        else:
            model = build_model(name, task["num_classes"], **overrides)
            model.load_weights(os.path.join(folder, f"{name}.weights.h5"))
        x = np.load(os.path.join(folder, f"{name}.input.npy"))
        np.save(os.path.join(folder, f"{name}.{backend}.npy"), np.asarray(model.predict_on_batch(x)))
        timings[name] = round(time.time() - start, 2)
    for name in task["keras_files"]:
        model = keras.saving.load_model(os.path.join(folder, f"{name}.keras"))
        x = np.load(os.path.join(folder, f"{name}.input.npy"))
        np.save(os.path.join(folder, f"{name}.{backend}.keras.npy"), np.asarray(model.predict_on_batch(x)))
        model.save(os.path.join(folder, f"{name}.{backend}.keras"))
    with open(os.path.join(folder, f"done.{backend}.json"), "w", encoding="utf-8") as f:
        json.dump(timings, f)


if __name__ == "__main__":
    main(sys.argv[1])
