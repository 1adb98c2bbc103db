"""count_flops / flops_by_layer: FLOPs worked out by hand for tiny models."""
import math

import keras
import pytest
import tensorflow as tf

from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.layers.conv2plus1d import Conv2Plus1D
from keras_bert3d.layers.lstm_pooling import LSTMPooling
from keras_bert3d.layers.non_local_block import NonLocalBlock
from keras_bert3d.models.builder import build_model
from keras_bert3d.models.flops import count_flops, flops_by_layer, walk_layers
from tiny_presets import tiny_overrides


def out_size(n, k, s):
    return (n - k) // s + 1


def test_conv3d_dense_by_hand():
    frames, size, channels, filters, kernel, strides, units = 4, 9, 3, 5, (3, 3, 3), (1, 2, 2), 7
    inp = keras.Input((frames, size, size, channels))
    x = keras.layers.Conv3D(filters, kernel, strides=strides, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling3D(name="gap")(x)
    out = keras.layers.Dense(units, name="fc")(x)
    model = keras.Model(inp, out)
    t, h = out_size(frames, kernel[0], strides[0]), out_size(size, kernel[1], strides[1])
    conv = 2 * (t * h * h * filters) * (kernel[0] * kernel[1] * kernel[2]) * channels
    dense = 2 * units * filters
    assert flops_by_layer(model) == {"conv": conv, "fc": dense}
    assert count_flops(model) == conv + dense


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_conv_counts_one_over_groups(groups):
    channels, filters, frames, size = 8, 16, 3, 5
    inp = keras.Input((frames, size, size, channels))
    out = keras.layers.Conv3D(filters, 3, padding="same", groups=groups)(inp)
    dense_equivalent = 2 * (frames * size * size * filters) * 27 * channels
    assert count_flops(keras.Model(inp, out)) * groups == dense_equivalent


def test_nested_model_and_composite_layer():
    """A Conv2Plus1D inside a nested functional model: both convs are reached, by path."""
    frames, size, channels, mid, filters, stride = 4, 8, 3, 6, 10, 2
    inner_in = keras.Input((frames, size, size, channels))
    inner_out = Conv2Plus1D(filters, mid, strides=stride, name="conv")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    inp = keras.Input((frames, size, size, channels))
    model = keras.Model(inp, inner(inp))
    # spatial (1, 3, 3) stride (1, s, s) pad (0, 1, 1); temporal (3, 1, 1) stride (s, 1, 1) pad (1, 0, 0)
    h = out_size(size + 2, 3, stride)
    t = out_size(frames + 2, 3, stride)
    spatial = 2 * (frames * h * h * mid) * 9 * channels
    temporal = 2 * (t * h * h * filters) * 3 * mid
    assert flops_by_layer(model) == {"inner/conv/spatial_conv": spatial, "inner/conv/temporal_conv": temporal}


def test_bert_pooling_by_hand():
    tokens, dim, heads, ffn = 4, 16, 2, 24
    inp = keras.Input((tokens, dim))
    model = keras.Model(inp, BERTPooling(num_heads=heads, intermediate_dim=ffn, name="bert")(inp))
    n = tokens + 1  # with the CLS token
    projections = 4 * 2 * n * dim * dim  # Q, K, V, O
    attention = 2 * heads * n * n * (dim // heads) * 2  # QK^T and AV
    feed_forward = 2 * (2 * n * dim * ffn)
    by_layer = flops_by_layer(model)
    assert by_layer["bert/block0_attention"] == attention
    assert count_flops(model) == projections + attention + feed_forward


def test_non_local_and_lstm_by_hand():
    frames, size, channels, inter, hidden, layers = 2, 3, 8, 4, 5, 2
    inp = keras.Input((frames, size, size, channels))
    x = NonLocalBlock(inter_channels=inter, name="nl")(inp)
    x = keras.layers.Reshape((frames, size * size * channels))(x)
    out = LSTMPooling(hidden, layers, name="lstm")(x)
    by_layer = flops_by_layer(keras.Model(inp, out))
    positions = frames * size * size
    assert by_layer["nl"] == 2 * (2 * positions * positions * inter)
    assert sum(v for k, v in by_layer.items() if k.startswith("nl/")) == 2 * positions * channels * inter * 4
    features = size * size * channels
    lstm = 2 * frames * 4 * hidden * (features + hidden) + 2 * frames * 4 * hidden * (hidden + hidden)
    assert by_layer["lstm"] == lstm


def test_layers_are_restored_and_counts_repeat():
    inp = keras.Input((2, 4, 4, 3))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Conv3D(2, 1)(inp)))
    first = count_flops(model)
    assert count_flops(model) == first > 0
    assert all("call" not in vars(layer) for layer in walk_layers(model))


def test_unknown_dimensions_need_input_shape():
    inp = keras.Input((None, 4, 4, 3))
    model = keras.Model(inp, keras.layers.Conv3D(2, 1)(inp))
    with pytest.raises(ValueError, match="unknown dimensions"):
        count_flops(model)
    frames = 3
    assert count_flops(model, input_shape=(frames, 4, 4, 3)) == 2 * (frames * 4 * 4 * 2) * 3


def graph_flops(graph):
    """An independent count: the conv and matmul ops of a traced TF graph (nested functions included)."""
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "Conv3D"):
            total += 2 * math.prod(op.outputs[0].shape) * math.prod(op.inputs[1].shape[:-1])
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            lhs = op.inputs[0].shape
            total += 2 * math.prod(op.outputs[0].shape) * (lhs[-2] if transposed else lhs[-1])
        elif op.type == "Einsum":
            specs = op.get_attr("equation").decode().split("->")[0].split(",")
            sizes = {c: d for spec, x in zip(specs, op.inputs) for c, d in zip(spec, x.shape)}
            total += 2 * math.prod(sizes.values())
        elif op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            total += graph_flops(graph._get_function(op.get_attr("f").name).graph)
    return total


@pytest.mark.parametrize("name", ["rgb_r2plus1d_32f_34_bert10", "rgb_resneXt3D64f101_bert10_FRAB",
                                  "rgb_resneXt3D64f101_FRMB_NLB_concatenation", "rgb_resneXt3D64f101_FRMB_lstm",
                                  "rgb_I3D64f_bert2_FRMB", "rgb_slowfast64f_50_bert10_FRAB_early",
                                  "rgb_slowfast64f_50_bert10_FRMB_late"])
def test_presets_match_the_traced_graph(name):
    """Every conv and matmul TF runs is counted once, by the layer rules (grouped convs included)."""
    model = build_model(name, 4, **tiny_overrides(name))
    spec = tf.TensorSpec((1, *model.input.shape[1:]), "float32")
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    expected = graph_flops(graph)
    assert expected > 0 and count_flops(model) == expected
