"""count_flops: the analytic forward FLOPs of one clip through a built Keras model.

The model is traced once (a ``tf.function`` trace on the TensorFlow backend: shapes only,
no arithmetic; an eager call on zeros elsewhere) with batch 1, while every layer reached
by walking the model recursively (nested functional models, composite layers such as
``Conv2Plus1D``, ``R2Plus1DBlock``, ``Bottleneck3D``, ``Unit3D``, ``InceptionModule``,
``FastToSlowFusion``, ``BERTPooling``, ...) records the shapes it was called with. The
FLOPs then come from a few generic rules on the layers that do the arithmetic:

- ``Conv1D/2D/3D``: ``2 * output elements * kernel volume * in_channels / groups``
  (the Keras kernel is ``(*kernel_size, in_channels / groups, filters)``, so grouped
  convolutions count ``1 / groups`` automatically); transposed convolutions
  ``2 * input elements * kernel volume * filters``; depthwise ``2 * output * kernel volume``.
- ``Dense``: ``2 * output elements * input features``; ``EinsumDense`` (the Q/K/V/O
  projections of ``MultiHeadAttention``): ``2 * output elements * contracted size``.
- ``MultiHeadAttention``: its projections through the ``EinsumDense`` rule, plus the two
  attention products ``QK^T`` and ``AV``: ``2 * heads * Nq * Nk * (key_dim + value_dim)``.
- Layers whose matrix products are raw ``keras.ops`` calls on activations or their own
  weights, so no sublayer sees them: ``NonLocalBlock`` (``theta . phi^T`` and
  ``scores . g``: ``4 * P^2 * inter_channels`` for ``P = T*H*W`` positions; its four
  1x1x1 convs go through the conv rule) and ``LSTMPooling`` (per layer and step, the input
  and recurrent projections ``2 * 4h * (in + h)``), and ``Bottleneck3D``'s grouped ``conv_b``
  when it runs group by group on a CPU (the conv rule on each group's slice).

A multiply-add counts as 2 FLOPs. Biases, BatchNorm, LayerNorm, activations, softmax,
pooling, padding, residual additions, concatenations and the token mean are ignored (they
are a fraction of a percent here). A layer called twice is counted twice.
"""
import contextlib
import math

import keras

from keras_bert3d.layers.bottleneck3d import Bottleneck3D
from keras_bert3d.layers.lstm_pooling import LSTMPooling
from keras_bert3d.layers.non_local_block import NonLocalBlock


def _dims(x, layer):
    shape = tuple(x.shape)
    if any(d is None for d in shape):
        raise ValueError(f"count_flops needs static shapes; layer {layer.name!r} saw shape {shape}")
    return tuple(int(d) for d in shape)


def _size(x, layer):
    return math.prod(_dims(x, layer))


def _conv(layer, args, kwargs, outputs):
    kernel = tuple(layer.kernel.shape)
    return 2 * _size(outputs, layer) * math.prod(kernel[:-1])


def _conv_transpose(layer, args, kwargs, outputs):
    kernel = tuple(layer.kernel.shape)  # (*kernel_size, filters, in_channels)
    return 2 * _size(args[0], layer) * math.prod(kernel[:-1])


def _depthwise(layer, args, kwargs, outputs):
    kernel = tuple(layer.kernel.shape)  # (*kernel_size, in_channels, multiplier)
    return 2 * _size(outputs, layer) * math.prod(kernel[:-2])


def _dense(layer, args, kwargs, outputs):
    return 2 * _size(outputs, layer) * int(layer.kernel.shape[0])


def _einsum_dense(layer, args, kwargs, outputs):
    _, rest = layer.equation.split(",")
    kernel_spec, output_spec = rest.split("->")
    contracted = [size for letter, size in zip(kernel_spec, layer.kernel.shape) if letter not in output_spec]
    return 2 * _size(outputs, layer) * math.prod(int(s) for s in contracted)


def _argument(args, kwargs, index, name):
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _attention(layer, args, kwargs, outputs):
    query = _dims(_argument(args, kwargs, 0, "query"), layer)
    value = _argument(args, kwargs, 1, "value")
    key = _argument(args, kwargs, 2, "key")
    key = _dims(value if key is None else key, layer)
    axes = layer.attention_axes or tuple(range(1, len(query) - 1))
    outer = math.prod(query[i] for i in range(len(query) - 1) if i not in axes)
    num_queries = math.prod(query[i] for i in axes)
    num_keys = math.prod(key[i] for i in axes)
    value_dim = layer.value_dim or layer.key_dim
    return 2 * outer * layer.num_heads * num_queries * num_keys * (layer.key_dim + value_dim)


def _non_local(layer, args, kwargs, outputs):
    shape = _dims(args[0], layer)
    positions = math.prod(shape[1:-1])
    return 4 * shape[0] * positions * positions * int(layer.theta.filters)


def _lstm_pooling(layer, args, kwargs, outputs):
    batch, steps, in_dim = _dims(args[0], layer)
    hidden, total = layer.hidden_dim, 0
    for _ in range(layer.num_layers):
        total += 2 * batch * steps * 4 * hidden * (in_dim + hidden)
        in_dim = hidden
    return total


def _bottleneck(layer, args, kwargs, outputs):
    """Only ``conv_b`` when it runs group by group (raw ``ops.conv`` calls); else its sublayers count."""
    if not layer.per_group_convolution:
        return 0
    out = _dims(outputs, layer)
    return 2 * math.prod(out[:-1]) * layer.mid_filters * math.prod(tuple(layer.conv_b.kernel.shape)[:-1])


# (layer classes, rule); the first match wins, so subclasses come before their bases.
RULES = (
    ((keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose), _conv_transpose),
    ((keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D), _depthwise),
    ((keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D), _conv),
    ((keras.layers.Dense,), _dense),
    ((keras.layers.EinsumDense,), _einsum_dense),
    ((keras.layers.MultiHeadAttention,), _attention),
    ((NonLocalBlock,), _non_local),
    ((LSTMPooling,), _lstm_pooling),
    ((Bottleneck3D,), _bottleneck),
)


def _rule(layer):
    for classes, rule in RULES:
        if isinstance(layer, classes):
            return rule
    return None


def _sublayers(layer):
    """Every layer held by ``layer``'s attributes (directly or in lists, tuples and dicts)."""
    found = []

    def visit(value):
        if isinstance(value, keras.layers.Layer):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for value in vars(layer).values():
        visit(value)
    return found


def walk_layers(model):
    """Every layer under ``model`` (not ``model`` itself), depth first, each once."""
    seen, order, stack = {id(model)}, [], list(reversed(_sublayers(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        order.append(layer)
        stack.extend(reversed(_sublayers(layer)))
    return order


@contextlib.contextmanager
def _recording(model, records):
    """Shadow every sublayer's ``call`` with a recorder for the duration; always restored."""
    path, patched = [], []

    def recorder(layer, original, rule):
        def call(*args, **kwargs):
            path.append(layer.name)
            try:
                outputs = original(*args, **kwargs)
                if rule is not None:
                    records.append(("/".join(path), int(rule(layer, args, kwargs, outputs))))
            finally:
                path.pop()
            return outputs
        return call

    try:
        for layer in walk_layers(model):
            patched.append((layer, vars(layer).get("call")))
            layer.call = recorder(layer, layer.call, _rule(layer))
        yield
    finally:
        for layer, own in patched:
            if own is None:
                vars(layer).pop("call", None)
            else:
                vars(layer)["call"] = own


def _input_specs(model, input_shape):
    """The batch-1 ``[(shape, dtype)]`` of each model input, in ``keras.tree.flatten`` order."""
    inputs = keras.tree.flatten(model.input)
    if input_shape is None:
        shapes = [tuple(t.shape[1:]) for t in inputs]
    elif len(inputs) == 1:
        shapes = [tuple(input_shape)]
    else:
        shapes = [tuple(s) for s in input_shape]
    if len(shapes) != len(inputs):
        raise ValueError(f"`input_shape` must give {len(inputs)} shapes; received input_shape={input_shape!r}")
    specs = []
    for shape, tensor in zip(shapes, inputs):
        if any(d is None for d in shape):
            raise ValueError(f"The model input has unknown dimensions {shape}; pass input_shape "
                             f"(without the batch), e.g. (T, H, W, C); received input_shape={input_shape!r}")
        specs.append(((1, *(int(d) for d in shape)), tensor.dtype))
    return specs


def _trace(model, specs):
    def pack(flat):
        return keras.tree.pack_sequence_as(model.input, flat) if len(flat) > 1 else flat[0]

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf  # only to trace: a FuncGraph is built, no arithmetic runs

        structure = pack([tf.TensorSpec(shape, dtype) for shape, dtype in specs])
        tf.function(lambda x: model(x, training=False)).get_concrete_function(structure)
    else:
        model(pack([keras.ops.zeros(shape, dtype) for shape, dtype in specs]), training=False)


def flops_by_layer(model, input_shape=None):
    """{layer path: forward FLOPs of one clip}, e.g. ``"backbone/layer1_block0/conv1/spatial_conv"``.

    Only the layers a rule counts (see the module docstring) appear; a path is the chain
    of layer names from ``model``'s own layers down. ``input_shape`` (without the batch)
    overrides ``model.input``'s shape, needed when it has unknown dimensions.
    """
    specs = _input_specs(model, input_shape)
    records = []
    with _recording(model, records):
        _trace(model, specs)
    totals = {}
    for path, flops in records:
        totals[path] = totals.get(path, 0) + flops
    return totals


def count_flops(model, input_shape=None):
    """Forward FLOPs (multiply-add = 2) of one clip (batch 1) through the built ``model``."""
    return sum(flops_by_layer(model, input_shape).values())
