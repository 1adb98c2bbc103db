"""ReferenceAdamW: torch's AdamW update (the reference's opt/AdamW.py) step for step, with weight-decay
exclusions, gradient accumulation and float64; serialisation and .keras round trips."""
import importlib.util

import keras
import numpy as np
import pytest

from keras_bert3d.optimizers import ReferenceAdamW
from torch_formulas import keras_loop, mean_of_groups, random_problem, torch_adamw, torch_reference_loop

# A learning rate exact in float32 (Keras keeps it in a float32 variable; the rest is in the weight's dtype).
HYPER = dict(learning_rate=2.0 ** -7, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.1)


def _apply(optimizer, init, grads_per_call, dtype):
    variables = [keras.Variable(p, dtype=dtype, name=n) for p, n in zip(init, ("kernel", "bias"))]
    history = []
    for grads in grads_per_call:
        optimizer.apply(grads, variables)
        history.append([np.asarray(v) for v in variables])
    return variables, history


# float32: the step (1e-2) of a weight near 1 is known to a float32 ulp of the weight, ~1e-5 of the step.
@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-5), ("float64", 1e-12)])
def test_steps_match_torch_formula_with_decay_exclusion(dtype, rtol):
    init, grads = random_problem(0, dtype, steps=5)
    optimizer = ReferenceAdamW(**HYPER)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    variables, history = _apply(optimizer, init, grads, dtype)
    expected = torch_adamw(init, grads, **{k: v for k, v in HYPER.items() if k != "learning_rate"},
                           lr=HYPER["learning_rate"], decay_mask=[True, False])
    assert all(str(v.dtype) == dtype for v in variables)
    for got, want in zip(history, expected):  # every step, not only the last
        for g, w, p in zip(got, want, init):
            ulps = 8 * np.finfo(dtype).eps * np.max(np.abs(p))
            np.testing.assert_allclose(g - p, w - p, rtol=rtol, atol=ulps)  # the weight's step
    assert int(np.asarray(optimizer.iterations)) == 5


def test_epsilon_after_bias_correction_unlike_keras_adamw():
    """With 1e-7 gradients the placement of epsilon moves the bias's first step by ~5 %: this optimizer follows
    torch, Keras' AdamW does not."""
    init, grads = random_problem(1, "float64", steps=1)
    lr = HYPER["learning_rate"]
    expected = torch_adamw(init, grads, lr=lr, weight_decay=0.0)[0]
    _, ours = _apply(ReferenceAdamW(lr, weight_decay=0.0), init, grads, "float64")
    _, keras_ = _apply(keras.optimizers.AdamW(lr, weight_decay=0.0), init, grads, "float64")
    step, ours_step, keras_step = expected[1] - init[1], ours[0][1] - init[1], keras_[0][1] - init[1]
    np.testing.assert_allclose(ours_step, step, rtol=1e-12)
    assert np.max(np.abs(keras_step / step - 1)) > 0.02


def test_float64_keeps_beta_2_and_epsilon_exact():
    """Under float64 the update is computed in float64: 0.999 is not 0.99900001 (Keras AdamW's cast)."""
    init, grads = random_problem(2, "float64", steps=30, scales=(1.0, 1.0))
    _, history = _apply(ReferenceAdamW(1e-3, weight_decay=1e-3), init, grads, "float64")
    expected = torch_adamw(init, grads, lr=np.float64(np.float32(1e-3)), weight_decay=1e-3)  # lr: float32 var
    for g, w, p in zip(history[-1], expected[-1], init):
        np.testing.assert_allclose(g - p, w - p, rtol=1e-12)
    rounded = torch_adamw(init, grads, lr=np.float64(np.float32(1e-3)), weight_decay=1e-3,
                          beta_2=float(np.float32(0.999)))
    assert np.max(np.abs((rounded[-1][0] - history[-1][0]) / (expected[-1][0] - init[0]))) > 1e-9


@pytest.mark.parametrize("steps", [2, 3])
def test_gradient_accumulation_counts_optimizer_steps(steps):
    """k micro-batches make one torch step with their mean gradient; the bias corrections use the number of
    applied updates (Keras' `iterations` under accumulation), not the number of micro-batches."""
    init, micro = random_problem(3, "float64", steps=4 * steps)
    optimizer = ReferenceAdamW(**HYPER, gradient_accumulation_steps=steps)
    _, history = _apply(optimizer, init, micro, "float64")
    expected = torch_adamw(init, mean_of_groups(micro, steps), lr=HYPER["learning_rate"],
                           weight_decay=HYPER["weight_decay"])
    for update in range(4):
        for got, want, p in zip(history[(update + 1) * steps - 1], expected[update], init):
            np.testing.assert_allclose(got - p, want - p, rtol=1e-12)
        if update:  # nothing moves between two updates
            np.testing.assert_array_equal(history[update * steps][0], history[update * steps - 1][0])
    assert int(np.asarray(optimizer.iterations)) == 4


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("accumulation", [None, 2])
def test_matches_torch_optim_adamw(accumulation):
    import torch

    init, micro = random_problem(4, "float64", steps=6)
    expected = torch_reference_loop(
        lambda kernel, bias: torch.optim.AdamW([{"params": [kernel]}, {"params": [bias], "weight_decay": 0.0}],
                                               lr=HYPER["learning_rate"], eps=1e-8, weight_decay=0.1),
        init, micro, accumulation)
    got = keras_loop(ReferenceAdamW(HYPER["learning_rate"], weight_decay=0.1,
                                    gradient_accumulation_steps=accumulation), init, micro)
    for g, w, start in zip(got, expected, init):
        np.testing.assert_allclose(g - start, w - start, rtol=1e-12)


def test_config_round_trip_and_validation():
    optimizer = ReferenceAdamW(learning_rate=3e-4, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=1e-3,
                               gradient_accumulation_steps=4)
    config = optimizer.get_config()
    assert (config["beta_1"], config["beta_2"], config["epsilon"], config["weight_decay"]) == (0.8, 0.99, 1e-6,
                                                                                                1e-3)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, ReferenceAdamW) and restored.get_config() == config
    assert keras.optimizers.serialize(optimizer)["registered_name"] == "keras_bert3d>ReferenceAdamW"
    for bad in ({"beta_2": 1.0}, {"epsilon": -1.0}, {"weight_decay": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReferenceAdamW(**bad)


def test_keras_file_restores_the_optimizer_state(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5, activation="relu")(inputs)))
    model.compile(ReferenceAdamW(1e-2, weight_decay=1e-3, gradient_accumulation_steps=2), "mse")
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)  # 3 micro-batches: 1 update, 1 pending
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, ReferenceAdamW)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(np.asarray(loaded.optimizer.iterations)) == 1
    for m in (model, loaded):  # both continue identically (the pending micro-batch is in the file too)
        m.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
