"""Block-level gradient recompute: the same numbers with the switch on and off, and less kept for backward."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import random_clip
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.layers.bottleneck3d import Bottleneck3D
from keras_bert3d.layers.inception_module import InceptionModule
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock
from keras_bert3d.layers.recompute import recompute
from keras_bert3d.models.builder import build_model
from models.tiny_presets import TINY_R2PLUS1D, tiny_overrides

# Every block kind with a `remat` switch, as (make(remat) -> layer, input channels): the residual
# blocks of R(2+1)D (identity, projection), ResNeXt (grouped, strided), SlowFast (temporal conv_a,
# spatial conv_b) and the FR block, and I3D's Inception module.
BLOCKS = {
    "r2plus1d-identity": (lambda remat: R2Plus1DBlock(4, remat=remat), 4),
    "r2plus1d-projection": (lambda remat: R2Plus1DBlock(6, strides=2, remat=remat), 4),
    "bottleneck-grouped": (lambda remat: Bottleneck3D(8, 4, strides=2, groups=2, remat=remat), 4),
    "bottleneck-slowfast": (lambda remat: Bottleneck3D(8, 4, kernel_a=(3, 1, 1), kernel_b=(1, 3, 3),
                                                       zero_init_last_bn=True, remat=remat), 8),
    "bottleneck-fr": (lambda remat: Bottleneck3D(6, 3, projection=True, remat=remat), 8),
    "inception": (lambda remat: InceptionModule([2, 2, 4, 2, 2, 2], remat=remat), 4),
}


def twin_blocks(kind, x):
    """The same block (same weights and statistics) without and with recompute."""
    make = BLOCKS[kind][0]
    plain, remat = make(False), make(True)
    plain.build(x.shape)
    remat.build(x.shape)
    rng = np.random.default_rng(4)
    plain.set_weights([w + rng.normal(0, 0.1, w.shape).astype("float32") for w in plain.get_weights()])
    remat.set_weights(plain.get_weights())
    return plain, remat


def block_input(kind, seed=1, size=8):
    return random_clip(2, 4, size, channels=BLOCKS[kind][1], seed=seed)


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
@pytest.mark.parametrize("kind", list(BLOCKS))
def test_exact_same_outputs_gradients_and_statistics(graph, kind):
    x = block_input(kind)
    plain, remat = twin_blocks(kind, x)
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


@pytest.mark.parametrize("kind", ["r2plus1d-identity", "bottleneck-slowfast", "inception"])
def test_recompute_keeps_less_for_backward(kind):
    x = block_input(kind, seed=2, size=16)
    plain, remat = twin_blocks(kind, x)
    with_remat, without = kept_for_backward(remat, x), kept_for_backward(plain, x)
    # Without recompute: every conv output and ReLU output, several times the input (the input
    # itself, a placeholder here, is not counted); with it: nothing but the input.
    assert without > 4 * x.nbytes
    assert with_remat < 0.1 * without, (with_remat, without)


@pytest.mark.parametrize("kind", list(BLOCKS))
def test_inference_and_symbolic_calls_skip_recompute(kind):
    x = block_input(kind, seed=3)
    plain, remat = twin_blocks(kind, x)
    np.testing.assert_array_equal(np.asarray(remat(x, training=False)), np.asarray(plain(x, training=False)))
    y = remat(keras.Input(x.shape[1:]))
    assert tuple(y.shape[1:]) == tuple(plain.compute_output_shape(x.shape)[1:])
    revived = remat.__class__.from_config(remat.get_config())
    assert revived.remat is True and revived.get_config() == remat.get_config()


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


# One preset per backbone family, with its FR block where the family has one.
FAMILY_PRESETS = ["rgb_r2plus1d_32f_34_bert10", "rgb_resneXt3D64f101_bert10_FRAB", "rgb_I3D64f_bert2_FRAB",
                  "rgb_slowfast64f_50_bert10_FRMB_early"]


def recomputing_blocks(model):
    backbone = model.backbone
    return sorted(layer.name for layer in backbone.layers if getattr(layer, "remat", False))


@pytest.mark.parametrize("preset", [p if "r2plus1d" in p else pytest.param(p, marks=pytest.mark.full)
                                    for p in FAMILY_PRESETS])  # the other families' TF steps take 17-50 s
def test_backbone_switch_fit_step_is_exact_and_round_trips(preset):
    """One ``model.fit`` step of a tiny model of each family: the same loss and the same weights after it."""
    results = []
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model(preset, 2, remat=remat, **tiny_overrides(preset))
        prep = model.preprocessing
        x = random_clip(2, prep["num_frames"], prep["crop_size"], seed=5)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        history = model.fit(x, np.array([0, 1]), batch_size=2, epochs=1, verbose=0, shuffle=False)
        results.append((history.history["loss"][0], [np.asarray(w) for w in model.weights]))
        blocks = recomputing_blocks(model)
        if remat:  # every residual block / Inception module, the FR blocks included
            assert blocks and all(n.startswith(("layer", "mixed", "mapper", "slow_", "fast_")) for n in blocks)
            assert ("r2plus1d" in preset) != any("mapper" in n for n in blocks)  # R(2+1)D has no FR block
        else:
            assert blocks == []
        config = model.backbone.get_config()
        assert config["remat"] is remat
        assert model.backbone.__class__.from_config(config).get_config() == config
    (loss_off, weights_off), (loss_on, weights_on) = results
    assert loss_on == loss_off
    for w_off, w_on in zip(weights_off, weights_on):
        np.testing.assert_array_equal(w_on, w_off)


@pytest.mark.parametrize("preset, stages, stage_one, appended_fr", [
    ("rgb_r2plus1d_32f_34_bert10", 4, ["layer1_block0"], set()),
    ("rgb_resneXt3D64f101_bert10_FRAB", 4, ["layer1_block0"], {"mapper"}),
    ("rgb_I3D64f_bert2_FRAB", 3, ["mixed_3b", "mixed_3c"], {"mapper"}),
    # FRMB: the FR blocks replace the last s5 blocks, so they belong to stage 4.
    ("rgb_slowfast64f_50_bert10_FRMB_early", 4, ["fast_res2_block0", "slow_res2_block0"], set()),
])
def test_remat_n_recomputes_the_first_n_stages_only(preset, stages, stage_one, appended_fr):
    def blocks(remat):
        return recomputing_blocks(build_model(preset, 2, remat=remat, **tiny_overrides(preset)))

    assert blocks(1) == stage_one
    every, all_stages = set(blocks(True)), set(blocks(stages))
    # True = every stage and an FR block appended after them (FRAB); n = stages: the stages' blocks only.
    assert every - all_stages == appended_fr and all_stages <= every
    if "FRMB" in preset:
        assert {"slow_mapper", "fast_mapper"} <= all_stages
    with pytest.raises(ValueError, match=f"1..{stages}"):
        blocks(stages + 1)


@pytest.mark.parametrize("remat", ["yes", 0, 5, -1, 1.0])
def test_backbone_remat_must_be_a_bool_or_a_stage_count(remat):
    with pytest.raises(ValueError, match=f"remat={remat!r}"):
        R2Plus1DBackbone(remat=remat, **TINY_R2PLUS1D)


def test_block_remat_must_be_a_bool():
    for make in (lambda: R2Plus1DBlock(4, remat="yes"), lambda: Bottleneck3D(4, 2, remat=1),
                 lambda: InceptionModule([1] * 6, remat=None)):
        with pytest.raises(ValueError, match="`remat` must be True or False"):
            make()


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


@pytest.mark.full
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
