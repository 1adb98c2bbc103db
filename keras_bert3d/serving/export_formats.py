"""The exported model in other formats: the normalised-clip model as ONNX, an export's signature as LiteRT.

`export_onnx` writes a Keras model's forward pass (``predict_normalized``'s input, logits out) with tf2onnx and
checks it with ``onnx.checker``; `export_litert` converts a SavedModel signature written by
`export.export_saved_model` into a ``.tflite`` file, which `run_litert` runs.
"""
import re

import numpy as np
import tensorflow as tf

from keras_bert3d.atomic import atomic_path, atomic_write_bytes
from keras_bert3d.serving.signatures import INPUT_KEY, NORMALIZED_SIGNATURE, SIGNATURES, read_metadata
from keras_bert3d.validation import check_choice


def export_onnx(model, path, batch_size=1, opset=None):
    """The normalised-clip forward pass (logits) as ONNX, through ``model.export`` (tf2onnx; ``pip install
    tf2onnx``), checked with ``onnx.checker`` (full shape inference). Input ``clips`` ``(batch_size, T, S, S,
    C)`` float32; ``batch_size=None`` for any batch (not with the LSTM head: tf2onnx then writes a MatMul of
    incompatible shapes, which the check refuses). Every family converts when traced on a CPU-only machine
    (ResNeXt's Bottleneck3D then convolves group by group); a Keras grouped ``Conv3D`` (compiled with XLA by
    Keras' TensorFlow backend, e.g. ResNeXt traced where a GPU is visible) leaves a TensorFlow function call
    that ONNX lacks: refused too. Returns ``path``; a refused file is never written (keras_bert3d.atomic)."""
    import importlib.util

    if importlib.util.find_spec("tf2onnx") is None:  # what model.export(format="onnx") uses
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx")
    import onnx
    spec = [tf.TensorSpec([batch_size, *model.input.shape[1:]], tf.float32, name=INPUT_KEY)]
    with atomic_path(path) as tmp:  # checked before it takes the name ``path``
        model.export(tmp, format="onnx", input_signature=spec, opset_version=opset, verbose=False)
        graph = onnx.load(tmp).graph
        unknown = sorted({node.op_type for node in graph.node if not onnx.defs.has(node.op_type, node.domain)})
        problem = f"tf2onnx left TensorFlow ops that ONNX lacks: {unknown} (grouped 3D convolutions compiled " \
                  "with XLA?)" if unknown else None
        if problem is None:
            try:
                onnx.checker.check_model(tmp, full_check=True)
            except Exception as err:  # ValidationError, InferenceError
                problem = f"tf2onnx wrote an invalid model: {' '.join(str(err).split())[:300]}" + (
                    " (try batch_size=1)" if batch_size is None else "")
        if problem:
            raise ValueError(f"{model.name}: {problem}")
    return path


def export_litert(saved_model_path, path, signature=NORMALIZED_SIGNATURE, batch_size=1, select_tf_ops=False):
    """A SavedModel signature -> a LiteRT (``.tflite``) file; returns ``path``.

    The signature's restored function is traced at a static shape (``batch_size`` clips of the export's
    frames at its crop size for ``predict_normalized``, at its ``frame_size`` for ``serving_default``) and
    converted by ``tf.lite.TFLiteConverter``, without the ``top_k_classes`` strings. TFLite builtins only by
    default: the R(2+1)D presets convert; I3D, SlowFast and ResNeXt need ``MaxPool3D`` from TensorFlow
    (``select_tf_ops=True``; the file then runs only where the Flex delegate is linked, e.g. Android's
    ``tensorflow-lite-select-tf-ops``, not in the pip package's ``tf.lite.Interpreter``). Without it such a
    model is refused with the list of ops it lacks.
    """
    check_choice("signature", signature, SIGNATURES)
    meta = read_metadata(saved_model_path)
    prep = meta["preprocessing"]
    channels = len(prep["mean"])
    if signature == NORMALIZED_SIGNATURE:
        shape, dtype = [prep["crop_size"], prep["crop_size"]], tf.float32
    else:
        shape, dtype = prep["frame_size"], tf.uint8
    spec = tf.TensorSpec([batch_size, prep["num_frames"], *shape, channels], dtype, name=INPUT_KEY)
    loaded = tf.saved_model.load(saved_model_path)
    function = getattr(loaded, signature)
    numeric = tf.function(lambda clips: {k: v for k, v in function(clips).items() if k != "top_k_classes"})
    converter = tf.lite.TFLiteConverter.from_concrete_functions([numeric.get_concrete_function(spec)], loaded)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if select_tf_ops else [])
    try:
        data = converter.convert()
    except Exception as err:  # ConverterError: its message lists the ops TFLite lacks
        needed = re.findall(r"TF Select ops: ([^\n]*)", str(err))
        if not needed:
            raise
        raise ValueError(f"{meta['model']}: LiteRT has no builtin for {needed[0]}; pass select_tf_ops=True "
                         "(the file then needs the Flex delegate to run)") from None
    atomic_write_bytes(path, data)
    return path


def run_litert(path, clips):
    """Run an `export_litert` file on ``clips`` (NumPy); returns its outputs as a dict of NumPy arrays."""
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    return {k: np.asarray(v) for k, v in runner(**{INPUT_KEY: clips}).items()}
