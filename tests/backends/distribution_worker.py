"""JAX side of test_distribution_jax: two fit steps of a tiny R(2+1)D-BERT on a global batch of 4, on one
device or under keras.distribution.DataParallel over every device; writes the final weights."""
import os
import sys

import keras
import numpy as np

from keras_bert3d.models.builder import build_model
from tiny_presets import tiny_overrides


def main(out, devices):
    import jax

    assert len(jax.devices()) == devices, jax.devices()
    if devices > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
    keras.utils.set_random_seed(0)
    name = "rgb_r2plus1d_32f_34_bert10"
    # No randomness in the step (dropout, key masking): the runs differ only in where the batch is computed.
    model = build_model(name, 4, **dict(tiny_overrides(name), dropout=0.0, bert_dropout=0.0, mask_keep_prob=1.0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *model.input.shape[1:])).astype("float32")
    y = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    np.savez(out.replace(".npz", "_init.npz"), *[keras.ops.convert_to_numpy(w) for w in model.weights])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.savez(out, *[keras.ops.convert_to_numpy(w) for w in model.weights])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
