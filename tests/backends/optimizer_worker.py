"""One backend's side of test_optimizers_on_backends.py: ``python optimizer_worker.py`` (KERAS_BACKEND set) runs
ReferenceAdamW and ReferenceSGD with and without 2 accumulated micro-batches, eagerly and inside the backend's
stateless / compiled training step (model.fit), and checks every update against torch's formulas in NumPy."""
import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "optimizers"))
from torch_formulas import mean_of_groups, random_problem, torch_adamw, torch_sgd  # noqa: E402

from keras_bert3d.optimizers import ReferenceAdamW, ReferenceSGD  # noqa: E402

LR = 2.0 ** -7


def expected(name, init, micro, accumulation):
    steps = mean_of_groups(micro, accumulation or 1)
    if name == "adamw":
        return torch_adamw(init, steps, lr=LR, weight_decay=0.1, decay_mask=[True, False])[-1]
    return torch_sgd(init, steps, LR, 0.9, 0.9, 0.1, decay_mask=[True, False])[-1]


def make(name, accumulation):
    if name == "adamw":
        return ReferenceAdamW(LR, weight_decay=0.1, gradient_accumulation_steps=accumulation)
    return ReferenceSGD(LR, 0.9, 0.9, 0.1, gradient_accumulation_steps=accumulation)


def check_apply(name, accumulation):
    init, micro = random_problem(20, "float32", steps=6, scales=(1.0, 1.0))
    variables = [keras.Variable(p, name=n) for p, n in zip(init, ("kernel", "bias"))]
    optimizer = make(name, accumulation)
    optimizer.exclude_from_weight_decay(var_list=variables[1:])
    for grads in micro:
        optimizer.apply(grads, variables)
    for v, w in zip(variables, expected(name, init, micro, accumulation)):
        np.testing.assert_allclose(np.asarray(v), w, rtol=1e-5, atol=1e-6, err_msg=f"{name} {accumulation}")


def check_fit(name, accumulation):
    """A linear model trained by model.fit on fixed data: the weights' gradients are known in closed form, so
    the updates can be replayed in NumPy."""
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 4)).astype("float32")
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(seed=1), bias_initializer="ones")
    model = keras.Model(inputs, dense(inputs))
    optimizer = make(name, accumulation)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer, "mse")
    kernel, bias = (np.asarray(w).copy() for w in (dense.kernel, dense.bias))
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    # Replay: gradients of mean((xW + b - y)^2) per micro-batch at the weights of the last update.
    params, k, state, pending = [kernel, bias], accumulation or 1, [], []
    for i in range(4):
        xb, yb = x[2 * i:2 * i + 2], y[2 * i:2 * i + 2]
        residual = 2 * (xb @ params[0] + params[1] - yb) / yb.size
        pending.append([xb.T @ residual, residual.sum(0)])
        if len(pending) == k:
            state.append([sum(g[j] for g in pending) / k for j in range(2)])
            params = replay(name, [kernel, bias], state)
            pending = []
    for got, want in zip((dense.kernel, dense.bias), params):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5, err_msg=f"fit {name} {accumulation}")


def replay(name, init, steps):
    if name == "adamw":
        return torch_adamw(init, steps, lr=LR, weight_decay=0.1, decay_mask=[True, False])[-1]
    return torch_sgd(init, steps, LR, 0.9, 0.9, 0.1, decay_mask=[True, False])[-1]


if __name__ == "__main__":
    for optimizer_name in ("adamw", "sgd"):
        for steps in (None, 2):
            check_apply(optimizer_name, steps)
            check_fit(optimizer_name, steps)
    print(f"ok {keras.config.backend()}")
