"""BatchNormalization with PyTorch's running-variance rule: the moving variance takes the unbiased batch
variance (n / (n - 1)), the normalisation the biased one; inference is Keras' own."""
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from harness import run_saving_test, run_serialization_test, sublayers
from keras_bert3d.layers.batch_normalization import BatchNormalization

MOMENTUM = 0.9  # Keras convention (PyTorch momentum 0.1)
# (B, T, H, W, C) video tensors; n = B*T*H*W values per channel, down to n = 2.
SHAPES = [(2, 4, 6, 6, 5), (3, 2, 3, 5, 8), (1, 1, 1, 2, 3)]


def reference_update(x, moving_mean, moving_variance, momentum=MOMENTUM, rule="unbiased"):
    """PyTorch's BatchNorm3d update in float64 numpy: running = m * running + (1 - m) * batch statistic."""
    flat = np.asarray(x, "float64").reshape(-1, x.shape[-1])
    n = flat.shape[0]
    variance = flat.var(axis=0) * (n / (n - 1) if rule == "unbiased" else 1.0)
    return (momentum * moving_mean + (1 - momentum) * flat.mean(axis=0),
            momentum * moving_variance + (1 - momentum) * variance)


def randomized(layer, channels, rng, dtype="float32"):
    """Build ``layer`` (if not yet) and give it non-trivial weights and statistics; returns them."""
    if not layer.built:
        layer.build((None, None, None, None, channels))
    values = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.1, channels), rng.normal(0, 0.1, channels),
              rng.uniform(0.5, 1.5, channels)]
    layer.set_weights([v.astype(dtype) for v in values])
    return values


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("shape", SHAPES)
def test_training_step_moves_variance_by_the_unbiased_rule(shape):
    """One optimiser step of a model whose first layer is the BatchNorm: its statistics follow PyTorch."""
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(1.0, 2.0, size=shape).astype("float32")
    bn = BatchNormalization(momentum=MOMENTUM, name="bn")
    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling3D()(bn(inputs))))
    _, _, mean0, var0 = randomized(bn, shape[-1], rng)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(x, np.zeros((shape[0], 2), "float32"))
    mean, variance = reference_update(x, mean0, var0)
    np.testing.assert_allclose(as_numpy(bn.moving_mean), mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(as_numpy(bn.moving_variance), variance, rtol=1e-6)
    # A negative control: Keras' rule is measurably elsewhere.
    _, biased = reference_update(x, mean0, var0, rule="biased")
    assert np.max(np.abs(biased - variance) / variance) > 10 * 1e-6


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_normalisation_equals_keras_and_biased_rule_is_keras(shape):
    """Training outputs are Keras' (biased variance), bit for bit; ``"biased"`` is Keras' layer exactly."""
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    ours, biased, keras_bn = (BatchNormalization(momentum=MOMENTUM), BatchNormalization(
        momentum=MOMENTUM, moving_variance_rule="biased"), keras.layers.BatchNormalization(momentum=MOMENTUM))
    for layer in (ours, biased, keras_bn):
        randomized(layer, shape[-1], np.random.default_rng(2))
    expected = as_numpy(keras_bn(x, training=True))
    np.testing.assert_array_equal(as_numpy(ours(x, training=True)), expected)
    np.testing.assert_array_equal(as_numpy(biased(x, training=True)), expected)
    np.testing.assert_array_equal(as_numpy(biased.moving_variance), as_numpy(keras_bn.moving_variance))
    np.testing.assert_array_equal(as_numpy(ours.moving_mean), as_numpy(keras_bn.moving_mean))
    assert not np.allclose(as_numpy(ours.moving_variance), as_numpy(keras_bn.moving_variance), rtol=1e-6, atol=0)


def test_inference_and_frozen_layer_are_keras_own():
    x = np.random.default_rng(3).normal(size=SHAPES[0]).astype("float32")
    ours, keras_bn = BatchNormalization(), keras.layers.BatchNormalization()
    for layer in (ours, keras_bn):
        randomized(layer, x.shape[-1], np.random.default_rng(4))
    np.testing.assert_array_equal(as_numpy(ours(x, training=False)), as_numpy(keras_bn(x, training=False)))
    assert np.abs(as_numpy(ours(x))).max() > 0.1
    ours.trainable = False  # a frozen BatchNorm runs in inference mode and keeps its statistics
    before = [as_numpy(w) for w in ours.non_trainable_weights]
    np.testing.assert_array_equal(as_numpy(ours(x, training=True)), as_numpy(keras_bn(x, training=False)))
    for w, b in zip(ours.non_trainable_weights, before):
        np.testing.assert_array_equal(as_numpy(w), b)


def test_dynamic_shapes_and_mask():
    import tensorflow as tf

    rng = np.random.default_rng(5)
    x = rng.normal(size=SHAPES[1]).astype("float32")
    bn = BatchNormalization(momentum=MOMENTUM)
    _, _, mean0, var0 = randomized(bn, x.shape[-1], rng)
    step = tf.function(lambda t: bn(t, training=True), input_signature=[tf.TensorSpec([None] * 4 + [8])])
    step(x)  # n is a tensor here (unknown batch, T, H, W)
    np.testing.assert_allclose(as_numpy(bn.moving_variance), reference_update(x, mean0, var0)[1], rtol=1e-6)
    # With a mask, n counts the unmasked positions.
    tokens, mask = rng.normal(size=(2, 5, 4)).astype("float32"), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
    bn = BatchNormalization(momentum=MOMENTUM)
    bn.build(tokens.shape)
    bn(tokens, training=True, mask=mask)
    _, variance = reference_update(tokens[mask], np.zeros(4), np.ones(4))
    np.testing.assert_allclose(as_numpy(bn.moving_variance), variance, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float64"])
def test_dtype_policies(policy):
    """Statistics in float32 under mixed precision (float64 under float64), as Keras computes them."""
    rng = np.random.default_rng(6)
    x = rng.normal(1.0, 2.0, size=SHAPES[0]).astype("float32")
    ours = BatchNormalization(momentum=MOMENTUM, dtype=policy)
    keras_bn = keras.layers.BatchNormalization(momentum=MOMENTUM, dtype=policy)
    variable_dtype = keras.dtype_policies.get(policy).variable_dtype
    for layer in (ours, keras_bn):
        _, _, mean0, var0 = randomized(layer, x.shape[-1], np.random.default_rng(7), variable_dtype)
    x_cast = keras.ops.cast(x, ours.compute_dtype)
    y = ours(x_cast, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == ours.compute_dtype
    assert keras.backend.standardize_dtype(ours.moving_variance.dtype) == variable_dtype
    np.testing.assert_array_equal(as_numpy(y), as_numpy(keras_bn(x_cast, training=True)))
    seen = as_numpy(keras.ops.cast(x_cast, "float32")) if policy != "float64" else x
    _, variance = reference_update(seen, mean0, var0)
    np.testing.assert_allclose(as_numpy(ours.moving_variance), variance, rtol=1e-12 if policy == "float64" else 1e-6)


def test_config_and_keras_round_trip(tmp_path):
    layer = BatchNormalization(moving_variance_rule="biased", epsilon=1e-3, momentum=MOMENTUM)
    revived = run_serialization_test(layer)
    assert revived.moving_variance_rule == "biased" and revived.epsilon == 1e-3
    assert BatchNormalization().get_config()["moving_variance_rule"] == "unbiased"
    inputs = keras.Input((2, 3, 3, 4))
    model = keras.Model(inputs, BatchNormalization(name="bn")(inputs))
    randomized(model.get_layer("bn"), 4, np.random.default_rng(8))
    restored = run_saving_test(model, np.random.default_rng(9).normal(size=(2, 2, 3, 3, 4)).astype("float32"),
                               tmp_path)
    assert type(restored.get_layer("bn")) is BatchNormalization


def test_weights_saved_with_keras_batchnorm_load(tmp_path):
    """Keras addresses a functional model's weights by snake-cased class name and position: the class keeps
    Keras' name, so files written by models built with keras.layers.BatchNormalization still load."""
    def model(bn_class):
        inputs = keras.Input((2, 3, 3, 4))
        x = bn_class(name="first")(keras.layers.Conv3D(4, 1, name="conv")(inputs))
        return keras.Model(inputs, bn_class(name="second")(x))

    old, new = model(keras.layers.BatchNormalization), model(BatchNormalization)
    for name in ("first", "second"):
        randomized(old.get_layer(name), 4, np.random.default_rng(len(name)))
    old.save_weights(tmp_path / "old.weights.h5")
    new.load_weights(tmp_path / "old.weights.h5")
    x = np.random.default_rng(10).normal(size=(2, 2, 3, 3, 4)).astype("float32")
    np.testing.assert_array_equal(as_numpy(new(x)), as_numpy(old(x)))


def test_argument_checks():
    with pytest.raises(ValueError, match="moving_variance_rule='torch'"):
        BatchNormalization(moving_variance_rule="torch")
    with pytest.raises(ValueError, match="renorm=True"):
        BatchNormalization(renorm=True)
    BatchNormalization(renorm=True, moving_variance_rule="biased")


@pytest.mark.parametrize("family", ["R2Plus1DBackbone", "ResNeXt3DBackbone", "I3DBackbone", "SlowFastBackbone"])
def test_every_backbone_batchnorm_uses_the_rule(family):
    from models.tiny_presets import TINY

    from keras_bert3d.backbones import I3DBackbone, R2Plus1DBackbone, ResNeXt3DBackbone, SlowFastBackbone

    cls = {c.__name__: c for c in (R2Plus1DBackbone, ResNeXt3DBackbone, I3DBackbone, SlowFastBackbone)}[family]
    norms = [layer for layer in sublayers(cls(**TINY[family])) if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(n) is BatchNormalization and n.moving_variance_rule == "unbiased" for n in norms)


def test_tiny_backbone_training_step_follows_the_rule():
    """End to end: the stem BatchNorm of a tiny R(2+1)D after one forward pass in training."""
    from models.tiny_presets import TINY

    from keras_bert3d.backbones import R2Plus1DBackbone

    backbone = R2Plus1DBackbone(**TINY["R2Plus1DBackbone"])
    x = np.random.default_rng(11).normal(size=(2, 8, 32, 32, 3)).astype("float32")
    bn = backbone.get_layer("stem_bn_spatial")
    bn_input = as_numpy(keras.Model(backbone.input, backbone.get_layer("stem_conv_spatial").output)(x))
    mean0, var0 = as_numpy(bn.moving_mean), as_numpy(bn.moving_variance)
    backbone(x, training=True)
    mean, variance = reference_update(bn_input, mean0, var0, momentum=bn.momentum)
    np.testing.assert_allclose(as_numpy(bn.moving_mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(as_numpy(bn.moving_variance), variance, rtol=1e-5)


OTHER_BACKEND = """
import keras, numpy as np
from keras_bert3d.layers.batch_normalization import BatchNormalization
x = np.random.default_rng(0).normal(1.0, 2.0, size=(2, 3, 4, 4, 5)).astype("float32")
for policy in ("float32", "mixed_bfloat16"):
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input(x.shape[1:])
    bn = BatchNormalization(momentum=0.9, name="bn")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling3D()(bn(inputs))))
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(x, np.zeros((2, 2), "float32"))
    seen = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(x, bn.compute_dtype), "float32"))
    flat = seen.astype("float64").reshape(-1, 5)
    variance = 0.9 + 0.1 * flat.var(0) * len(flat) / (len(flat) - 1)
    error = np.abs(keras.ops.convert_to_numpy(bn.moving_variance) - variance) / variance
    print("ERR", policy, float(np.max(error)))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_rule_on_other_backends(backend):
    """The jitted JAX step (stateless variables) and the PyTorch step apply the same rule, mixed precision too."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", OTHER_BACKEND], env=env, capture_output=True, text=True,
                          timeout=300)
    errors = {line.split()[1]: float(line.split()[2]) for line in done.stdout.splitlines() if line.startswith("ERR ")}
    assert done.returncode == 0 and set(errors) == {"float32", "mixed_bfloat16"}, done.stderr[-2000:]
    assert max(errors.values()) < 1e-6, errors


def test_float64_policy_reaches_every_layer_head_included():
    """Under a float64 policy the whole classifier computes in float64: BatchNorm statistics, BERT and the
    logits (the classifier's Dense stays float32 only under float32 and mixed policies)."""
    from models.tiny_presets import tiny_overrides

    from keras_bert3d.models.builder import build_model

    keras.config.set_dtype_policy("float64")
    try:
        model = build_model("rgb_r2plus1d_32f_34_bert10", 3, **tiny_overrides("rgb_r2plus1d_32f_34_bert10"))
    finally:
        keras.config.set_dtype_policy("float32")
    # The preprocessor (raw frames -> clips, outside model(clips)) keeps float32 clips on purpose.
    wrong = sorted({layer.name for layer in sublayers(model) if layer.compute_dtype != "float64"} - {"preprocessor"})
    assert not wrong, f"layers not computing in float64: {wrong}"
    assert model.get_layer("classifier").kernel.dtype == "float64"
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float64"
    x = np.random.default_rng(12).normal(size=(2, 8, 32, 32, 3))
    model(x, training=True)
    norms = [layer for layer in sublayers(model) if isinstance(layer, BatchNormalization)]
    assert norms and all(keras.backend.standardize_dtype(n.moving_variance.dtype) == "float64" for n in norms)
    for policy, head in (("float32", "float32"), ("mixed_bfloat16", "float32")):
        keras.config.set_dtype_policy(policy)
        try:
            model = build_model("rgb_r2plus1d_32f_34_bert10", 3, **tiny_overrides("rgb_r2plus1d_32f_34_bert10"))
        finally:
            keras.config.set_dtype_policy("float32")
        assert model.get_layer("classifier").compute_dtype == head, policy
