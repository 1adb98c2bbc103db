"""Gradient recompute (rematerialisation) of one block: keep its input, recompute its insides in backward.

Training keeps, for the backward pass, every activation a layer's gradient reads: in an R(2+1)D block the
conv outputs (BatchNorm's inputs) and the ReLU outputs (the next conv's inputs), about five times the
block's output for each block. With recompute only the block's input is kept; the backward pass runs the
block's forward once more, block by block, to get the rest back: less memory for more compute (one more
forward of the recomputed blocks). Results do not change: the same ops run on the same values.

``keras.RematScope`` does not work here on the TensorFlow backend: it wraps ``Layer.__call__`` in
``tf.recompute_grad``, whose ``tf.custom_gradient`` refuses keyword arguments in graph mode, and every
block is called with ``training=``. So a block calls :func:`recompute` from its own ``call`` with a
function of tensors only that closes over ``training``, and `keras.remat` (``tf.recompute_grad`` on
TensorFlow, ``jax.checkpoint`` on JAX, ``torch.utils.checkpoint`` on torch) wraps that.

State updates: a block in training updates its BatchNorm moving statistics. The recomputation must not
update them a second time, and on JAX a value assigned inside ``jax.checkpoint`` must not leak out of it.
So the function runs in a `keras.StatelessScope` seeded with the block's current variable values; the
scope collects the new moving statistics, which leave the checkpointed function as outputs (without
gradient) and are assigned once, outside it.
"""
import keras
from keras import ops


def block_call(layer, forward, inputs, training):
    """A residual block's ``call``: ``forward(inputs, training)``, recomputed in the backward pass
    when ``layer.remat`` is on and the call trains (inference and symbolic calls run it plainly)."""
    if layer.remat and training:
        return recompute(layer, lambda x: forward(x, training), inputs)
    return forward(inputs, training)


def recompute(layer, forward, *inputs):
    """``forward(*inputs)``, with its intermediate activations recomputed in the backward pass.

    Args:
        layer: the layer that owns every variable ``forward`` reads or assigns (the block).
        forward: a function of tensors only (close over ``training`` and any other Python value).
            It must be deterministic (no dropout or random masking: a recompute would draw anew).
        *inputs: the tensors ``forward`` takes; these are what the backward pass keeps.

    Returns:
        ``forward(*inputs)``; the non-trainable variables ``forward`` assigned (BatchNorm moving
        statistics) hold their new values afterwards, assigned once.
    """
    variables = list(layer.variables)
    updated = []  # the variables ``forward`` assigned, in a fixed order (found on the first run)

    def checkpointed(*tensors):
        with keras.StatelessScope(state_mapping=[(v, v.value) for v in variables]) as scope:
            seeded = [scope.get_current_value(v) for v in variables]
            outputs = forward(*tensors)
        assigned = [v for v, value in zip(variables, seeded) if scope.get_current_value(v) is not value]
        if not updated:
            updated.extend(assigned)
        elif [id(v) for v in assigned] != [id(v) for v in updated]:
            raise RuntimeError(f"{layer.name}: the recomputed forward pass assigned other variables than the "
                               "first one; `forward` must be deterministic")
        return outputs, [ops.stop_gradient(scope.get_current_value(v)) for v in updated]

    outputs, new_values = keras.remat(checkpointed)(*inputs)
    for variable, value in zip(updated, new_values):
        variable.assign(value)
    return outputs
