"""A ResNeXt trained on JAX exports (bert3d's export_saved_model) to a SavedModel that answers on TF's CPU
with JAX's probabilities, with no XLA-compiled op and no grouped convolution."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness_backends import HERE, installed
from tiny_presets import tiny_overrides

NAME = "rgb_resneXt3D64f101_bert10_FRMB"


def xla_ops(graph_def):
    """Ops a CPU-only TF Serving may lack: XlaCallModule/Xla* ops, functions marked for XLA compilation,
    and Conv3D whose filter has fewer input channels than its input (a grouped convolution)."""
    found = []
    functions = [(f.signature.name, f.node_def, f.attr) for f in graph_def.library.function]
    for fname, nodes, attrs in [("<graph>", graph_def.node, {})] + functions:
        if "_XlaMustCompile" in attrs and attrs["_XlaMustCompile"].b:
            found.append(f"{fname}: _XlaMustCompile")
        for node in nodes:
            if node.op.startswith("Xla") or ("_XlaMustCompile" in node.attr and node.attr["_XlaMustCompile"].b):
                found.append(f"{fname}/{node.name}: {node.op}")
    return found


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed (pip install -e '.[jax]')")
def test_jax_trained_resnext_exports_for_cpu(tmp_path):
    import tensorflow as tf

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS="--xla_backend_optimization_level=0")
    done = subprocess.run([sys.executable, os.path.join(HERE, "export_worker.py"), str(tmp_path), NAME,
                           json.dumps(tiny_overrides(NAME))], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["moved"] > result["weights"] // 2  # it was trained on JAX
    loaded = tf.saved_model.load(result["path"])
    x = np.load(tmp_path / "input.npy")
    outputs = loaded.signatures["predict_normalized"](clips=tf.constant(x))
    expected = np.load(tmp_path / "jax_probabilities.npy")
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    assert np.array_equal(np.argsort(-expected, axis=-1)[:, :4], outputs["top_k_indices"].numpy()[:, :4])
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((tmp_path / "export" / "1" / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    assert xla_ops(graph) == []
    convs = [n for f in graph.library.function for n in f.node_def if n.op == "Conv3D"]
    assert len(convs) > 10


def test_native_grouped_convolution_is_caught():
    """Negative control: the same tiny ResNeXt traced with native grouped convolutions on TF is flagged."""
    import tensorflow as tf

    from keras_bert3d import backend
    from keras_bert3d.models.builder import build_model

    model = build_model(NAME, 4, **tiny_overrides(NAME))
    spec = tf.TensorSpec((1, *model.input.shape[1:]), tf.float32)
    with backend.grouped_convolutions("native"):
        native = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    with backend.grouped_convolutions("per_group"):
        split = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    assert xla_ops(native.graph.as_graph_def()) != []
    assert xla_ops(split.graph.as_graph_def()) == []
