"""Our own small test harness (never keras.src.testing), after keras-hub's ``TestCase``: the layer, backbone,
task and preset tests every family runs, and the serialization, saving and fit-step checks they share."""
import json
import os
import pathlib

import keras
import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_fixture(name):
    """(arrays, tolerance) of a parity fixture copied from ../shared/parity."""
    arrays = dict(np.load(FIXTURES / f"{name}.npz"))
    tol = json.loads((FIXTURES / "tolerances.json").read_text())[name]["tol"]
    return arrays, tol


def fixture_weights(arrays, prefix=""):
    """The ``w:`` entries of a fixture as a state dict, optionally re-rooted at ``prefix``."""
    out = {}
    for key, value in arrays.items():
        if key.startswith("w:"):
            name = key[2:]
            out[name[len(prefix):] if prefix and name.startswith(prefix) else name] = value
    return out


def ncthw_to_nthwc(x):
    return np.transpose(x, (0, 2, 3, 4, 1))


def assert_close(actual, expected, tol, what="output"):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = float(np.max(np.abs(actual - expected)))
    assert err <= tol, f"{what}: max |diff| {err:.3g} > tolerance {tol:.1g}"
    return err


def random_clip(batch, frames, size, channels=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, frames, size, size, channels)).astype("float32")


def run_serialization_test(obj):
    """get_config -> from_config gives an object whose config is identical (as JSON)."""
    config = obj.get_config()
    json.dumps(config)  # JSON primitives only
    revived = obj.__class__.from_config(config)
    assert json.dumps(revived.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    serialized = keras.saving.serialize_keras_object(obj)
    again = keras.saving.deserialize_keras_object(serialized)
    assert again.__class__ is obj.__class__
    return revived


def run_saving_test(model, inputs, tmp_path, atol=1e-6):
    """A ``.keras`` save/load round trip gives identical outputs."""
    expected = model(inputs, training=False)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)  # safe_mode on: no Lambda, no callables
    actual = restored(inputs, training=False)
    for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol)
    return restored


def run_fit_step(model, inputs, targets, loss=None):
    """One optimiser step moves the trainable weights and yields a finite loss."""
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(inputs, targets, epochs=1, batch_size=len(targets), verbose=0)
    loss_value = history.history["loss"][0]
    assert np.isfinite(loss_value)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "fit step changed no weight"
    return loss_value


def run_layer_test(layer, input_data, expected_output_shape, training_differs=False):
    """Symbolic and eager calls agree on the output shape; the layer serialises."""
    symbolic = layer(keras.KerasTensor(input_data.shape, dtype="float32"))
    assert tuple(symbolic.shape) == tuple(expected_output_shape), (symbolic.shape, expected_output_shape)
    eager = layer(input_data)
    assert tuple(eager.shape) == tuple(expected_output_shape)
    if hasattr(layer, "compute_output_shape"):
        try:
            shape = layer.compute_output_shape(input_data.shape)
        except NotImplementedError:
            shape = None
        if shape is not None:
            assert tuple(shape) == tuple(expected_output_shape)
    run_serialization_test(layer)
    return eager


def identity_backbone(feature_shapes):
    """A Backbone whose outputs are its inputs: classifier heads on given feature maps."""
    return IdentityBackbone(feature_shapes=[list(s) for s in feature_shapes])


from keras_bert3d.backbones.backbone import Backbone  # noqa: E402


@keras.saving.register_keras_serializable(package="keras_bert3d_tests")
class IdentityBackbone(Backbone):
    def __init__(self, feature_shapes, **kwargs):
        inputs = [keras.Input(tuple(s), name=f"features_{i}") for i, s in enumerate(feature_shapes)]
        outputs = [keras.layers.Identity(name=f"identity_{i}")(x) for i, x in enumerate(inputs)]
        single = len(inputs) == 1
        super().__init__(inputs=inputs[0] if single else inputs, outputs=outputs[0] if single else outputs,
                         **kwargs)
        self._backbone_config = {"feature_shapes": [list(s) for s in feature_shapes]}


def sublayers(model):
    """Every layer under ``model`` (composite layers' own sublayers too), InputLayers left out."""
    from keras_bert3d.models.flops import walk_layers

    return [layer for layer in walk_layers(model) if not isinstance(layer, keras.layers.InputLayer)]


def run_backbone_test(cls, init_kwargs, input_data, expected_output_shape, expected_stage_shapes, tmp_path,
                      mixed_precision="mixed_bfloat16"):
    """The shared backbone test (as keras-hub's ``run_backbone_test``): output and stage-output shapes,
    config and ``.keras`` round trips, and a mixed-precision policy reaching every layer.

    ``expected_output_shape`` is one shape, or a list of shapes for several outputs;
    ``expected_stage_shapes`` maps ``stage_outputs`` names to their shapes on ``input_data``.
    Returns the float32 backbone.
    """
    backbone = cls(**init_kwargs)
    outputs = keras.tree.flatten(backbone(input_data, training=False))
    expected = expected_output_shape if isinstance(expected_output_shape, list) else [expected_output_shape]
    assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected]
    assert backbone.feature_dims == [s[-1] for s in expected]
    # Stage outputs: the named tensors build a sub-model with the expected shapes.
    assert set(expected_stage_shapes) <= set(backbone.stage_outputs), sorted(backbone.stage_outputs)
    stages = keras.Model(backbone.input, {k: backbone.stage_outputs[k] for k in expected_stage_shapes})
    for name, value in stages(input_data, training=False).items():
        assert tuple(value.shape) == tuple(expected_stage_shapes[name]), name
    # Config and .keras round trips; non-default BatchNorm statistics must survive the save.
    revived = run_serialization_test(backbone)
    assert [w.path for w in revived.weights] == [w.path for w in backbone.weights]
    rng = np.random.default_rng(0)
    for w in backbone.non_trainable_weights:
        w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))
    restored = run_saving_test(backbone, input_data, tmp_path, atol=1e-5)
    assert type(restored) is cls
    # Mixed precision: the policy reaches every layer (nested ones too), survives get_config, and the
    # feature maps come out in the compute dtype.
    mixed = cls(**init_kwargs, dtype=mixed_precision)
    compute = keras.dtype_policies.get(mixed_precision).compute_dtype
    for model in (mixed, cls.from_config(mixed.get_config())):
        layers = sublayers(model)
        wrong = sorted({layer.name for layer in layers if layer.dtype_policy.name != mixed_precision})
        assert not wrong, f"layers without {mixed_precision}: {wrong}"
        assert len(layers) > len(model.layers)  # the walk reached nested sublayers
        assert [str(o.dtype) for o in keras.tree.flatten(model.outputs)] == [compute] * len(expected)
    return backbone


def _shapes(outputs):
    return [tuple(o.shape) for o in keras.tree.flatten(outputs)]


def _expected_shapes(expected):
    return [tuple(s) for s in (expected if isinstance(expected, list) else [expected])]


def run_task_test(cls, init_kwargs, train_data, expected_output_shape, tmp_path, batch_size=2):
    """The shared task test (as keras-hub's ``run_task_test``), for a ``VideoClassifier``: it builds and
    calls; ``compile()`` with no argument (the reference recipe: optimizer, loss from logits, top-1/top-5) fits
    one step that moves the weights; ``predict`` on arrays and on a ``tf.data`` dataset gives the call's
    logits; the config and ``.keras`` round trips. ``train_data`` is ``(x, y)``; ``x`` a clip batch or a list
    of them (two pathways). Returns the fitted task."""
    import tensorflow as tf

    x, y = train_data
    task = cls(**init_kwargs)
    assert _shapes(task(x, training=False)) == _expected_shapes(expected_output_shape)
    run_serialization_test(task)
    task.compile()
    assert task.optimizer is not None and task.loss.get_config()["from_logits"] is True
    before = [np.array(w) for w in task.trainable_weights]
    history = task.fit(x, y, batch_size=batch_size, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and {"top1", "top5"} <= set(history), sorted(history)
    after = [np.array(w) for w in task.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "a fit step changed no weight"
    logits = np.asarray(task(x, training=False))
    np.testing.assert_allclose(task.predict(x, batch_size=batch_size, verbose=0), logits, atol=1e-5)
    # A tuple element would read as (x, y): the two pathways are one 1-tuple's element.
    dataset = tf.data.Dataset.from_tensor_slices((tuple(x),) if isinstance(x, list) else x).batch(batch_size)
    np.testing.assert_allclose(task.predict(dataset, verbose=0), logits, atol=1e-5)
    run_saving_test(task, x, tmp_path)
    return task


def run_preset_test(cls, preset, init_kwargs, expected_output_shape, input_data=None):
    """The shared preset test (as keras-hub's ``run_preset_test``): ``cls.from_preset`` refuses an unknown
    name and builds ``preset`` with ``init_kwargs`` (the tiny overrides of tests/models/tiny_presets.py, and
    ``num_classes`` for a task); its output has the expected shape(s) and is finite; the ``get_config`` round
    trip rebuilds the same model. ``input_data`` defaults to a normal random batch of the model's input shape.
    Returns ``(model, revived, input_data, output)``: ``revived`` is the model rebuilt from its config."""
    with pytest.raises(ValueError, match="clowntown"):
        cls.from_preset("clowntown", **init_kwargs)
    model = cls.from_preset(preset, **init_kwargs)
    expected = _expected_shapes(expected_output_shape)
    if input_data is None:
        rng = np.random.default_rng(0)
        inputs = [rng.normal(size=(expected[0][0], *t.shape[1:])).astype("float32") for t in model.inputs]
        input_data = inputs[0] if len(inputs) == 1 else inputs
    output = model(input_data, training=False)
    assert _shapes(output) == expected
    assert all(np.all(np.isfinite(np.asarray(o))) for o in keras.tree.flatten(output))
    revived = run_serialization_test(model)
    assert [(w.path, tuple(w.shape)) for w in revived.weights] == [(w.path, tuple(w.shape)) for w in model.weights]
    return model, revived, input_data, output
