"""PyTorch side of test_torch_training: a Keras fit step, then a plain torch loop (torch.optim over the
Keras model's parameters) that lowers the loss on a fixed batch."""
import json
import sys

import keras
import numpy as np
import torch

from keras_bert3d.models.builder import build_model
from tiny_presets import tiny_overrides


def main(out):
    assert keras.config.backend() == "torch"
    keras.utils.set_random_seed(0)
    name = "rgb_r2plus1d_32f_34_bert10"
    model = build_model(name, 4, **tiny_overrides(name))
    x = np.random.default_rng(0).normal(size=(4, *model.input.shape[1:])).astype("float32")
    y = np.array([0, 1, 2, 3])
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    fit_loss = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
    # A plain torch loop: the Keras model is a torch.nn.Module; its weights are torch Parameters.
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt, training=True), yt)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    model.eval()
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(model(xt, training=False), yt))
    json.dump({"fit_loss": fit_loss, "loop_losses": losses, "final": final,
               "parameters": sum(p.requires_grad for p in model.parameters()), "trainable": len(model.trainable_weights)},
              open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1])
