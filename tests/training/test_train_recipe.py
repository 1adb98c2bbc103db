"""models/recipe.py and optimizers/ (the reference optimisers) and training/callbacks.py (the plateau schedule, atomic
checkpoints and the backup)."""
import json
import os

import keras
import numpy as np
import pytest

from keras_bert3d.models.builder import build_model
from keras_bert3d.training import callbacks as cb
from keras_bert3d.training.backup import TrainingBackup
from keras_bert3d.models import recipe
from models.tiny_presets import TINY_R2PLUS1D_BERT

TINY = TINY_R2PLUS1D_BERT


def _torch_sgd(params, grads_per_step, lr, momentum, dampening, weight_decay, decay_mask):
    """torch.optim.SGD.step written out in NumPy (the reference two_stream2.py optimiser)."""
    params, bufs = [p.copy() for p in params], [None] * len(params)
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            g = g + weight_decay * params[i] if decay_mask[i] else g
            bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * g
            params[i] = params[i] - lr * bufs[i]
    return params


def test_reference_sgd_matches_torch_sgd_with_dampening():
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=(2,)).astype("float32")]
    steps = [[rng.normal(size=p.shape).astype("float32") for p in init] for _ in range(4)]
    variables = [keras.Variable(p, name=n) for p, n in zip(init, ("kernel", "bias"))]
    optimizer = recipe.ReferenceSGD(learning_rate=0.1, momentum=0.9, dampening=0.9, weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_list=[variables[1]])
    for grads in steps:
        optimizer.apply(grads, variables)
    expected = _torch_sgd(init, steps, 0.1, 0.9, 0.9, 0.05, decay_mask=[True, False])
    for variable, value in zip(variables, expected):
        np.testing.assert_allclose(np.asarray(variable), value, rtol=1e-5, atol=1e-6)
    # Keras' own SGD (no dampening) would have moved differently: the port is not a relabelled SGD.
    plain = [keras.Variable(p) for p in init]
    sgd = keras.optimizers.SGD(0.1, momentum=0.9)
    for grads in steps:
        sgd.apply(grads, plain)
    assert not np.allclose(np.asarray(plain[0]), expected[0], atol=1e-3)


def test_reference_sgd_accumulates_like_the_reference_iter_size():
    rng = np.random.default_rng(1)
    init = [rng.normal(size=(4,)).astype("float32")]
    micro = [[rng.normal(size=(4,)).astype("float32")] for _ in range(4)]
    variable = [keras.Variable(init[0])]
    optimizer = recipe.ReferenceSGD(0.1, 0.9, 0.9, 1e-3, gradient_accumulation_steps=2)
    for grads in micro:
        optimizer.apply(grads, variable)
    averaged = [[(micro[0][0] + micro[1][0]) / 2], [(micro[2][0] + micro[3][0]) / 2]]  # loss / iter_size
    expected = _torch_sgd(init, averaged, 0.1, 0.9, 0.9, 1e-3, [True])
    np.testing.assert_allclose(np.asarray(variable[0]), expected[0], rtol=1e-5, atol=1e-6)
    config = optimizer.get_config()
    assert (config["momentum"], config["dampening"], config["weight_decay"]) == (0.9, 0.9, 1e-3)
    assert isinstance(recipe.ReferenceSGD.from_config(config), recipe.ReferenceSGD)


@pytest.fixture(scope="module")
def tiny_model():
    return build_model("rgb_r2plus1d_32f_34_bert10", 3, **TINY)


def test_adamw_recipe_and_weight_decay_exclusion(tiny_model):
    optimizer = recipe.make_optimizer("adamw", tiny_model)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(1e-5)
    assert (optimizer.weight_decay, optimizer.epsilon, optimizer.gradient_accumulation_steps) == (1e-3, 1e-8, 16)
    assert recipe.make_optimizer("sgd", tiny_model).coupled_weight_decay == 1e-3
    assert float(np.asarray(recipe.make_optimizer("sgd", tiny_model).learning_rate)) == pytest.approx(1e-2)
    excluded = {v.path for v in recipe.no_decay_variables(tiny_model)}
    assert {"bert/cls_token", "bert/position_embedding", "classifier/bias", "stem_bn_spatial/gamma"} <= excluded
    assert "bert/block0_attention/query/bias" in excluded  # (heads, dim) bias: excluded by name
    assert "classifier/kernel" not in excluded and "stem_conv_spatial/kernel" not in excluded
    # Zero gradients: AdamW moves a weight only through its decay, so only decayed weights move.
    variables = tiny_model.trainable_weights
    before = [np.asarray(v).copy() for v in variables]
    nonzero = {v.path for v, b in zip(variables, before) if np.any(b != 0)}
    for decay_all in (True, False):
        optimizer = recipe.make_optimizer("adamw", tiny_model, learning_rate=0.5, weight_decay=0.1,
                                          decay_norms_and_biases=decay_all, gradient_accumulation_steps=1)
        optimizer.apply([np.zeros(v.shape, "float32") for v in variables], variables)
        moved = {v.path for v, b in zip(variables, before) if not np.allclose(np.asarray(v), b)}
        for v, b in zip(variables, before):
            v.assign(b)
        assert moved == (nonzero if decay_all else nonzero - excluded)
        assert "classifier/kernel" in moved and ("bert/cls_token" in moved) == decay_all
    with pytest.raises(ValueError, match="optimizer"):
        recipe.make_optimizer("adam", tiny_model)


def test_loss_and_metrics():
    assert isinstance(recipe.make_loss(), keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(recipe.make_loss(one_hot=True), keras.losses.CategoricalCrossentropy)
    top1, top5 = recipe.make_metrics(3)
    assert (top1.name, top5.name, top5._fn_kwargs["k"]) == ("top1", "top5", 3)
    assert isinstance(recipe.make_metrics(10, one_hot=True)[0], keras.metrics.CategoricalAccuracy)


def _compiled(lr=1.0, accumulation=None):
    """A small seeded model with dropout (its seed state must survive a resume); no global seed needed."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1))
    x = keras.layers.Dropout(0.3, seed=3)(hidden(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(2))(x))
    model.compile(keras.optimizers.AdamW(lr, gradient_accumulation_steps=accumulation), recipe.make_loss(),
                  metrics=recipe.make_metrics(3))
    return model


def test_plateau_follows_torch_semantics():
    model = _compiled(lr=1.0)
    plateau = cb.ReferenceReduceLROnPlateau(patience=2, factor=0.1, verbose=0)
    plateau.set_model(model)
    lrs = []
    # 1.0 improves; 0.99995 is not 1e-4 (relative) better; so epochs 2.. are bad.
    for epoch, loss in enumerate([1.0, 0.99995, 0.9999, 0.99999, 1.2, 1.1, 1.1]):
        plateau.on_epoch_end(epoch, {"val_loss": loss})
        lrs.append(round(float(np.asarray(model.optimizer.learning_rate)), 6))
    # torch reduces when num_bad_epochs > patience: after the 3rd bad epoch, then counts again from 0.
    assert lrs == [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01]
    state = plateau.get_state()
    fresh = cb.ReferenceReduceLROnPlateau(patience=2)
    fresh.set_state(json.loads(json.dumps(state)))
    assert fresh.get_state() == state


def test_atomic_best_checkpoint_keeps_the_best_and_ties(tmp_path):
    model = _compiled()
    path = tmp_path / "best.keras"
    best = cb.AtomicBestCheckpoint(path, verbose=0)
    best.set_model(model)
    best.on_epoch_end(0, {"val_top1": 0.5})
    first = os.path.getmtime(path)
    model.layers[1].kernel.assign(np.ones((4, 8), "float32"))
    best.on_epoch_end(1, {"val_top1": 0.4})  # worse: not saved
    assert os.path.getmtime(path) == first and best.best_epoch == 0
    best.on_epoch_end(2, {"val_top1": 0.5})  # tie: saved (>=, as the reference)
    assert best.best_epoch == 2
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(np.asarray(loaded.layers[1].kernel), np.ones((4, 8)))
    assert sorted(os.listdir(tmp_path)) == ["best.keras"]  # no temporary file left
    with pytest.raises(ValueError, match=".keras"):
        cb.AtomicBestCheckpoint(tmp_path / "best.h5")


def test_history_csv_never_duplicates_a_redone_epoch(tmp_path):
    model = _compiled()
    history = cb.HistoryCSV(tmp_path / "history.csv")
    history.set_model(model)
    for epoch, loss in ((0, 1.0), (1, 0.9), (1, 0.8), (2, 0.7)):
        history.on_epoch_end(epoch, {"loss": loss})
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,learning_rate" and len(lines) == 4 and lines[2].startswith("1,0.8")


def test_epoch_accumulation_reset_drops_partial_accumulation():
    model = _compiled(accumulation=4)
    x, y = np.ones((6, 4), "float32"), np.zeros((6,), "int32")
    model.fit(x, y, batch_size=1, epochs=1, verbose=0)  # 6 micro-steps: one update, 2 pending
    iteration, accumulators = cb._accumulation_variables(model.optimizer)
    assert int(np.asarray(iteration)) == 6 and any(np.any(np.asarray(a)) for a in accumulators)
    reset = cb.EpochAccumulationReset(resume_epoch=1)
    reset.set_model(model)
    reset.on_epoch_begin(1)  # the resumed epoch keeps its accumulation
    assert int(np.asarray(iteration)) == 6
    reset.on_epoch_begin(2)
    assert int(np.asarray(iteration)) == 4 and not any(np.any(np.asarray(a)) for a in accumulators)
    assert int(np.asarray(model.optimizer.iterations)) == 1  # Adam's step count: one real update so far


class _Crash(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt


def _data(epoch):
    import tensorflow as tf

    rng = np.random.default_rng(epoch)
    x, y = rng.normal(size=(10, 4)).astype("float32"), rng.integers(0, 3, 10).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(2)


def _run(backup_dir, epochs=3, crash_at=None):
    """What train.py does, on a small Dense model: restore, finish the interrupted epoch, then the rest."""
    import functools

    model = _compiled(lr=0.05, accumulation=2)
    history = cb.HistoryCSV(os.path.join(backup_dir, "..", "history.csv"))
    backup = TrainingBackup(backup_dir, save_freq=1, stateful={"history": history}, steps_per_epoch=5)
    epoch, step = backup.restore(model)
    callbacks = [history, cb.EpochAccumulationReset(epoch if step else None), backup]
    if crash_at:
        callbacks.append(_Crash(crash_at))
    val = _data(99)
    fit = functools.partial(model.fit, validation_data=val, callbacks=callbacks, verbose=0, shuffle=False)
    if step:
        model.evaluate(val.take(1), verbose=0)
        fit(_data(epoch).skip(step), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=5 - step)
        epoch += 1
    for e in range(epoch, epochs):
        fit(_data(e), initial_epoch=e, epochs=e + 1)
    return model, history.rows, (epoch, step)


def test_training_backup_resumes_mid_epoch_exactly(tmp_path):
    reference, reference_rows, _ = _run(str(tmp_path / "a" / "backup"))
    with pytest.raises(KeyboardInterrupt):
        _run(str(tmp_path / "b" / "backup"), crash_at=8)  # epoch 1, after its 3rd batch (mid-accumulation)
    state = TrainingBackup.read(str(tmp_path / "b" / "backup"))
    assert (state["epoch"], state["step"]) == (1, 3)
    resumed, resumed_rows, _ = _run(str(tmp_path / "b" / "backup"))
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert len(resumed_rows) == 3
    for a, b in zip(reference_rows, resumed_rows):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6), (a["epoch"], key)
    assert len([f for f in os.listdir(tmp_path / "b" / "backup") if f.startswith("ckpt-")]) == 4  # last 2 backups
