"""JAX side of test_export_jax: train a tiny ResNeXt one step on JAX, save it, export it with bert3d's
export (which hands the model to a TensorFlow subprocess), and write the JAX probabilities."""
import json
import os
import sys

import keras
import numpy as np

from keras_bert3d.models.builder import build_model
from keras_bert3d.serving.export import export_saved_model


def main(folder, name, overrides):
    assert keras.config.backend() == "jax", keras.config.backend()
    keras.utils.set_random_seed(0)
    model = build_model(name, 4, **overrides)
    x = np.random.default_rng(0).normal(size=(4, *model.input.shape[1:])).astype("float32")
    before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, np.array([0, 1, 2, 3]), batch_size=2, epochs=1, verbose=0)
    moved = sum(not np.allclose(a, np.array(w)) for a, w in zip(before, model.trainable_weights))
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict_on_batch(x[:2]), axis=-1))
    np.save(os.path.join(folder, "input.npy"), x[:2])
    np.save(os.path.join(folder, "jax_probabilities.npy"), probabilities)
    path = export_saved_model(model, os.path.join(folder, "export"), warmup=False)
    with open(os.path.join(folder, "result.json"), "w", encoding="utf-8") as f:
        json.dump({"path": path, "moved": int(moved), "weights": len(before)}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
