"""ReferenceSGD: torch.optim.SGD(momentum=0.9, dampening=0.9, weight_decay) step for step (the reference's
two_stream2.py), with exclusions, gradient accumulation (the first-step rule counts optimizer steps) and
float64; serialisation and .keras round trips."""
import importlib.util

import keras
import numpy as np
import pytest

from keras_bert3d.optimizers import ReferenceSGD
from torch_formulas import keras_loop, mean_of_groups, random_problem, torch_reference_loop, torch_sgd

LR = 2.0 ** -4  # exact in the float32 learning-rate variable


def _variables(init, dtype):
    return [keras.Variable(p, dtype=dtype, name=n) for p, n in zip(init, ("kernel", "bias"))]


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_steps_match_torch_formula_with_decay_exclusion(dtype, rtol):
    init, grads = random_problem(10, dtype, steps=5, scales=(1.0, 1.0))
    variables = _variables(init, dtype)
    optimizer = ReferenceSGD(LR, momentum=0.9, dampening=0.9, weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_list=variables[1:])
    expected = torch_sgd(init, grads, LR, 0.9, 0.9, 0.05, decay_mask=[True, False])
    for grads_t, want in zip(grads, expected):
        optimizer.apply(grads_t, variables)
        for v, w, p in zip(variables, want, init):
            ulps = 8 * np.finfo(dtype).eps * np.max(np.abs(p))
            np.testing.assert_allclose(np.asarray(v) - p, w - p, rtol=rtol, atol=ulps)
    assert all(str(v.dtype) == dtype for v in variables)
    # Keras' SGD (no dampening) moves differently: the port is not a relabelled SGD.
    plain = _variables(init, dtype)
    sgd = keras.optimizers.SGD(LR, momentum=0.9)
    for grads_t in grads:
        sgd.apply(grads_t, plain)
    assert not np.allclose(np.asarray(plain[0]), expected[-1][0], atol=1e-3)


@pytest.mark.parametrize("steps", [2, 4])
def test_accumulation_first_step_rule_counts_optimizer_steps(steps):
    """Under accumulation Keras' `iterations` is micro-batches // steps: 0 during the whole first accumulation,
    so the raw-gradient first step (torch's empty momentum buffer) happens once, on the first update."""
    init, micro = random_problem(11, "float64", steps=3 * steps, scales=(1.0, 1.0))
    variables = _variables(init, "float64")
    optimizer = ReferenceSGD(LR, 0.9, 0.9, 1e-3, gradient_accumulation_steps=steps)
    expected = torch_sgd(init, mean_of_groups(micro, steps), LR, 0.9, 0.9, 1e-3)
    for i, grads in enumerate(micro):
        optimizer.apply(grads, variables)
        if (i + 1) % steps == 0:
            for v, w, p in zip(variables, expected[i // steps], init):
                np.testing.assert_allclose(np.asarray(v) - p, w - p, rtol=1e-12)
    assert int(np.asarray(optimizer.iterations)) == 3


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("accumulation", [None, 2])
def test_matches_torch_optim_sgd_with_dampening(accumulation):
    import torch

    init, micro = random_problem(12, "float64", steps=6, scales=(1.0, 1.0))
    expected = torch_reference_loop(
        lambda kernel, bias: torch.optim.SGD([{"params": [kernel]}, {"params": [bias], "weight_decay": 0.0}],
                                             lr=LR, momentum=0.9, dampening=0.9, weight_decay=1e-2),
        init, micro, accumulation)
    got = keras_loop(ReferenceSGD(LR, 0.9, 0.9, 1e-2, gradient_accumulation_steps=accumulation), init, micro)
    for g, w, start in zip(got, expected, init):
        np.testing.assert_allclose(g - start, w - start, rtol=1e-12)


def test_config_round_trip_and_validation():
    optimizer = ReferenceSGD(0.1, momentum=0.8, dampening=0.5, weight_decay=1e-3, gradient_accumulation_steps=3)
    config = optimizer.get_config()
    assert (config["momentum"], config["dampening"], config["weight_decay"]) == (0.8, 0.5, 1e-3)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, ReferenceSGD) and restored.get_config() == config
    for bad in ({"momentum": 1.5}, {"dampening": -0.1}, {"weight_decay": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReferenceSGD(**bad)


def test_keras_file_restores_the_optimizer_state(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(ReferenceSGD(0.1, 0.9, 0.9, 1e-3, gradient_accumulation_steps=2), "mse")
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, ReferenceSGD) and loaded.optimizer.get_config() == model.optimizer.get_config()
    for m in (model, loaded):
        m.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
