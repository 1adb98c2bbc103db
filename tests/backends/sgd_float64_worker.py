"""One backend's side of the float64 SGD comparison (test_jax_training.py): ``python sgd_float64_worker.py
START.weights.h5 OUT.npz`` trains the tiny R(2+1)D baseline for 3 epochs of 4 micro-batches (the reference SGD:
momentum and dampening 0.9, coupled weight decay, 2 accumulated batches, BatchNorm statistics every micro-batch)
in float64 on fixed inputs, and saves the losses, validation logits and final weights."""
import sys

import keras
import numpy as np

from keras_bert3d.models import recipe
from keras_bert3d.models.builder import build_model

TINY = {"num_frames": 8, "image_size": 32, "stage_blocks": [1, 1, 1, 1], "stage_filters": [8, 8, 16, 16],
        "stem_filters": [6, 8], "dropout": 0.0}


def main(start, out):
    keras.config.set_dtype_policy("float64")
    model = build_model("rgb_r2plus1d_32f_34", 2, **TINY)
    model.load_weights(start)
    rng = np.random.default_rng(0)
    # float32-exact inputs: a data adapter that casts them to floatx changes nothing.
    x, y = rng.normal(size=(8, 8, 32, 32, 3)).astype("float32").astype("float64"), np.array([0, 1] * 4)
    x_val = rng.normal(size=(4, 8, 32, 32, 3)).astype("float32").astype("float64")
    model.compile(recipe.make_optimizer("sgd", model, 1e-2, 1e-3, True, 2), recipe.make_loss())
    results = {}
    for epoch in range(3):
        results[f"loss{epoch}"] = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False).history["loss"]
        results[f"logits{epoch}"] = np.asarray(model.predict(x_val, batch_size=2, verbose=0))
    results.update({f"weight:{w.path}": np.asarray(w) for w in model.weights})
    np.savez(out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
