"""Block-level gradient recompute: the same numbers with the switch on and off, and less kept for backward."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import random_clip
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock
from keras_bert3d.layers.recompute import recompute

TINY = dict(stage_blocks=[1, 1, 1, 1], stage_filters=(4, 8, 8, 8), stem_filters=(3, 4), num_frames=8,
            image_size=32)


def twin_blocks(x, **kwargs):
    """The same block (same weights and statistics) without and with recompute."""
    plain, remat = R2Plus1DBlock(remat=False, **kwargs), R2Plus1DBlock(remat=True, **kwargs)
    plain.build(x.shape)
    remat.build(x.shape)
    rng = np.random.default_rng(4)
    plain.set_weights([w + rng.normal(0, 0.1, w.shape).astype("float32") for w in plain.get_weights()])
    remat.set_weights(plain.get_weights())
    return plain, remat


def step(layer, x, graph):
    """Output, d loss / d input and d loss / d every trainable weight, in training mode."""
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))  # a loss whose gradient differs per element
        return [y, *tape.gradient(loss, [x, *layer.trainable_variables])]

    return [np.asarray(t) for t in (tf.function(run) if graph else run)(tf.constant(x))]


def kept_for_backward(layer, x):
    """Bytes of forward tensors that the gradient ops of one traced training step read."""
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    graph = tf.function(run).get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
    ops = graph.get_operations()
    first = next(i for i, op in enumerate(ops) if op.name.startswith("gradient_tape"))
    backward = {op.name for op in ops[first:]}
    kept = {t.name: t for op in ops[first:] for t in op.inputs
            if t.op.name not in backward and t.op.type not in ("Const", "ReadVariableOp", "Placeholder")
            and op.type not in ("Shape", "ShapeN")}
    return sum(t.shape.num_elements() * t.dtype.size for t in kept.values())


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("kwargs", [dict(filters=4), dict(filters=6, strides=2)], ids=["identity", "projection"])
def test_exact_same_outputs_gradients_and_statistics(graph, kwargs):
    x = random_clip(2, 4, 8, channels=4, seed=1)
    plain, remat = twin_blocks(x, **kwargs)
    before = [np.asarray(v) for v in plain.non_trainable_variables]
    expected, actual = step(plain, x, graph), step(remat, x, graph)
    assert len(actual) == 2 + len(remat.trainable_variables)
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"tensor {i} differs with remat on")
        assert np.abs(e).max() > 0  # not a trivially zero comparison
    # BatchNorm moving statistics: updated exactly once per step with recompute too (not again in backward).
    after_plain = [np.asarray(v) for v in plain.non_trainable_variables]
    after_remat = [np.asarray(v) for v in remat.non_trainable_variables]
    for b, p, r in zip(before, after_plain, after_remat):
        assert not np.array_equal(b, p)
        np.testing.assert_array_equal(r, p)


def test_recompute_keeps_less_for_backward():
    x = random_clip(2, 4, 16, channels=8, seed=2)
    plain, remat = twin_blocks(x, filters=8)
    with_remat, without = kept_for_backward(remat, x), kept_for_backward(plain, x)
    # Without recompute: every conv output and ReLU output, several times the input (the input
    # itself, a placeholder here, is not counted); with it: nothing but the input.
    assert without > 4 * x.nbytes
    assert with_remat < 0.1 * without, (with_remat, without)


def test_inference_and_symbolic_calls_skip_recompute():
    x = random_clip(1, 4, 8, channels=4, seed=3)
    plain, remat = twin_blocks(x, filters=4)
    np.testing.assert_array_equal(np.asarray(remat(x, training=False)), np.asarray(plain(x, training=False)))
    y = remat(keras.Input(x.shape[1:]))
    assert tuple(y.shape[1:]) == tuple(plain.compute_output_shape(x.shape)[1:])


def test_recompute_refuses_a_forward_that_assigns_differently():
    x = random_clip(1, 4, 8, channels=4, seed=3)
    block = R2Plus1DBlock(4)
    block.build(x.shape)
    calls = []

    def forward(t):
        calls.append(1)
        return block(t, training=len(calls) == 1)  # trains (assigns) only on the first run

    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        y = recompute(block, forward, xt)
    with pytest.raises(RuntimeError, match="deterministic"):
        tape.gradient(y, xt)


def test_backbone_switch_fit_step_is_exact_and_round_trips():
    """One ``model.fit`` step of a tiny backbone + head: the same loss and the same weights after it."""
    x = random_clip(2, 8, 32, seed=5)
    y = np.array([0, 1])
    results = []
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        backbone = R2Plus1DBackbone(remat=remat, **TINY)
        model = keras.Sequential([backbone, keras.layers.GlobalAveragePooling3D(), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
        results.append((history.history["loss"][0], [np.asarray(w) for w in model.weights]))
        assert backbone.get_layer("layer1_block0").remat is remat
        assert R2Plus1DBackbone.from_config(backbone.get_config()).get_config() == backbone.get_config()
    (loss_off, weights_off), (loss_on, weights_on) = results
    assert loss_on == loss_off
    for w_off, w_on in zip(weights_off, weights_on):
        np.testing.assert_array_equal(w_on, w_off)


def test_remat_must_be_a_bool():
    with pytest.raises(ValueError, match="remat='yes'"):
        R2Plus1DBlock(4, remat="yes")


JAX_CHECK = r'''
import numpy as np, keras, jax
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock
x = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 4)).astype("float32")
plain, remat = R2Plus1DBlock(6, strides=2), R2Plus1DBlock(6, strides=2, remat=True)
plain.build(x.shape); remat.build(x.shape); remat.set_weights(plain.get_weights())
def step(layer):
    tv, ntv = [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables]
    def loss(tv, x):
        y, new = layer.stateless_call(tv, ntv, x, training=True)
        return (y * jax.numpy.sin(y)).sum(), new
    (value, new), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(tv, x)
    return [value, *grads[0], grads[1], *new, *ntv]
a, b = step(plain), step(remat)
print("EXACT", all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(a, b)), len(a))
'''


def test_exact_on_jax_through_jax_checkpoint():
    """The same block on the JAX backend (keras.remat is jax.checkpoint there), under jit, in a subprocess."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", JAX_CHECK], capture_output=True, text=True, env=env, timeout=600)
    # loss, 15 weight gradients, the input gradient, 10 new + 10 old moving statistics: 37 arrays.
    assert "EXACT True 37" in out.stdout, out.stdout + out.stderr[-2000:]
