"""A VideoClassifier -> a SavedModel for TF Serving (and ONNX / LiteRT files), preprocessing inside.

Layout: ``<export_dir>/<version>/`` (TF Serving's), written by `export_saved_model`. Two signatures:

- ``serving_default``: input ``clips``, uint8 ``(B, T, H, W, C)`` of any ``H x W`` (``T`` the model's frame
  count, ``C`` 3 for RGB and 2 for flow). In the graph, as the data pipeline's ``mode="val"`` does
  (`preprocess_clips`): every frame is resized to the preset's ``frame_size`` ``[H', W']`` (bilinear,
  half-pixel centres, no antialiasing, rounded back to uint8: `VideoPreprocessor`, the model's own layer; the aspect ratio is
  not kept, as the reference's frames are resized to 170x128 / 340x256), then the centre
  ``crop_size x crop_size`` window at ``y = round((H' - S) / 2)``, ``x = round((W' - S) / 2)`` (round half
  to even) is cut, then ``(x * scale - mean) / std``.
- ``predict_normalized``: input ``clips``, float32 ``(B, T, S, S, C)`` already normalised (what the Keras
  model takes).

Both return ``logits`` and ``probabilities`` ``(B, num_classes)`` (float32), ``top_k_indices`` (int32),
``top_k_scores`` (float32) and ``top_k_classes`` (string) ``(B, min(5, num_classes))``. The signatures'
input shapes are ``(-1, T, -1, -1, C)`` and ``(-1, T, S, S, C)``, so a remote client reads ``T`` from TF
Serving's metadata. A request of the wrong dtype is refused by the signature (TF's message gives the
expected dtype); a wrong rank, frame count, channel count, crop size (``predict_normalized``) or an
empty frame by an assert in the graph (TF Serving does not check shapes) whose message names the
signature, the expected dtype and shape, then the received shape. Class names and the preprocessing
dict travel inside: graph constants, the restored object's ``class_names[0]`` and ``metadata_json[0]``
string variables, and ``assets/preprocessing.json`` (`read_metadata`).
"""
import json
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from keras_bert3d.models.video_preprocessor import PREPROCESSING_KEYS, VideoPreprocessor, check_preprocessing  # noqa: F401

SERVING_SIGNATURE = "serving_default"
NORMALIZED_SIGNATURE = "predict_normalized"
INPUT_KEY = "clips"
TOP_K = 5
METADATA_ASSET = "preprocessing.json"
OUTPUT_KEYS = ("logits", "probabilities", "top_k_indices", "top_k_scores", "top_k_classes")


def default_class_names(num_classes):
    return [f"class_{i}" for i in range(num_classes)]


def read_class_names(path):
    """Class names from a file: a JSON list, or one name per line (blank lines skipped)."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        names = json.loads(text)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected a JSON list of strings; received {type(names).__name__}")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def class_names_beside(model_path):
    """The class names a training run wrote next to its model (``class_names.json`` in the run folder of
    ``best.keras``/``last.keras``), or None when there is no such file."""
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), "class_names.json")
    return read_class_names(path) if os.path.isfile(path) else None


def next_version(export_dir):
    """1 + the largest integer sub-directory name of ``export_dir`` (1 if none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(d) for d in os.listdir(export_dir) if re.fullmatch(r"\d+", d)
                and os.path.isdir(os.path.join(export_dir, d))]
    return max(versions, default=0) + 1


def preprocess_clips(clips, preprocessing):
    """uint8 ``(B, T, H, W, C)`` -> float32 ``(B, T, S, S, C)``: the model's `VideoPreprocessor` rules."""
    return VideoPreprocessor.from_preprocessing(preprocessing)(clips)


def _checked(clips, signature, dims, dtype):
    """``clips`` after asserting its rank and shape against ``dims`` (None = any size); the message names
    the signature and the expected dtype and shape, and the received shape follows it. Raw ``Rank`` and
    ``Shape`` ops: TF Serving does not check a request against the signature's shape, so the check must
    not be folded away from the static shape the graph was traced with."""
    text = ", ".join(str(d) if d is not None else ("batch", "frames", "height", "width", "channels")[i]
                     for i, d in enumerate(dims))
    message = f"{signature} expects `{INPUT_KEY}` of dtype {dtype} and shape ({text}); received shape"
    shape = tf.raw_ops.Shape(input=clips, out_type=tf.int32)
    rank_ok = tf.equal(tf.raw_ops.Rank(input=clips), len(dims))
    padded = tf.concat([shape, tf.ones([len(dims)], tf.int32)], 0)[:len(dims)]
    sizes_ok = [tf.equal(padded[i], d) for i, d in enumerate(dims) if d is not None]
    valid = tf.logical_and(rank_ok, tf.reduce_all(tf.stack(sizes_ok + [tf.reduce_prod(padded[1:]) > 0])))
    with tf.control_dependencies([tf.debugging.Assert(valid, [message, shape], summarize=len(dims) + 1)]):
        clips = tf.identity(clips)
    return tf.ensure_shape(clips, dims)


class _Endpoints:
    """The two signature functions of one model. Both call one ``tf.function`` of the normalised clip, so
    the Keras model is traced (and stored) once."""

    def __init__(self, model, preprocessing, class_names, top_k):
        self.model, self.top_k = model, min(top_k, len(class_names))
        self.preprocessor = VideoPreprocessor.from_preprocessing(preprocessing)
        self.class_names = tf.constant(class_names)
        frames, size, channels = preprocessing["num_frames"], preprocessing["crop_size"], len(preprocessing["mean"])
        self.uint8_dims = [None, frames, None, None, channels]
        self.float_dims = [None, frames, size, size, channels]
        self.forward = tf.function(self.outputs).get_concrete_function(tf.TensorSpec(self.float_dims, tf.float32))

    def outputs(self, clips):
        logits = tf.cast(self.model(clips, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        scores, indices = tf.math.top_k(probabilities, k=self.top_k)
        return {"logits": logits, "probabilities": probabilities, "top_k_indices": indices,
                "top_k_scores": scores, "top_k_classes": tf.gather(self.class_names, indices)}

    def serve_uint8(self, clips):
        clips = _checked(clips, SERVING_SIGNATURE, self.uint8_dims, "uint8")
        return self.forward(self.preprocessor(clips))

    def serve_normalized(self, clips):
        return self.forward(_checked(clips, NORMALIZED_SIGNATURE, self.float_dims, "float32"))


def metadata(model, preprocessing, class_names, version, top_k=TOP_K):
    """What ``assets/preprocessing.json`` (and the ``metadata_json`` variable) hold."""
    return {"model": model.name, "version": version, "num_classes": len(class_names), "class_names": class_names,
            "preprocessing": preprocessing, "input_key": INPUT_KEY, "top_k": min(top_k, len(class_names)),
            "signatures": {SERVING_SIGNATURE: "uint8 clips (B, T, H, W, C), any H x W: resized, centre-cropped "
                                              "and normalised in the graph",
                           NORMALIZED_SIGNATURE: "float32 clips (B, T, S, S, C), already normalised"},
            "outputs": list(OUTPUT_KEYS)}


def export_saved_model(model, export_dir, class_names=None, version=None, preprocessing=None, warmup=True,
                       top_k=TOP_K):
    """Write ``model`` as the SavedModel ``<export_dir>/<version>/`` and return that path.

    Args:
        model: a built VideoClassifier (any Keras model mapping normalised clips to logits).
        export_dir: the model's base directory (TF Serving's ``base_path``).
        class_names: ``num_classes`` strings; default ``class_<i>``.
        version: a positive int; default the next free version under ``export_dir``. An existing version
            is refused.
        preprocessing: default ``model.preprocessing`` (a preset's dict).
        warmup: also write ``assets.extra/tf_serving_warmup_requests`` (one ``serving_default`` request).
        top_k: how many classes the ``top_k_*`` outputs give (at most ``num_classes``).
    """
    import keras

    from keras_bert3d import backend

    if backend.name() != "tensorflow":  # a SavedModel is TF graphs: JAX/PyTorch models export through TF
        return backend.call_on_tensorflow(
            model, "keras_bert3d.serving.export:export_saved_model", export_dir=os.fspath(export_dir),
            class_names=None if class_names is None else [str(n) for n in class_names], version=version,
            preprocessing=preprocessing, warmup=warmup, top_k=top_k)
    prep = check_preprocessing(preprocessing if preprocessing is not None else getattr(model, "preprocessing", None))
    num_classes = int(model.output.shape[-1])
    class_names = default_class_names(num_classes) if class_names is None else [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{model.name} has {num_classes} classes but {len(class_names)} class names were given")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive int; received top_k={top_k!r}")
    version = next_version(export_dir) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive int; received version={version!r}")
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path):
        raise ValueError(f"{path} exists: pick another --version (next free: {next_version(export_dir)})")

    meta = metadata(model, prep, class_names, version, top_k)
    with backend.grouped_convolutions("per_group"):  # runs on CPU-only TF Serving: no XLA grouped conv
        endpoints = _Endpoints(model, prep, class_names, top_k)  # the one trace of the model
    archive = keras.export.ExportArchive()
    archive.add_endpoint(SERVING_SIGNATURE, endpoints.serve_uint8,
                         [tf.TensorSpec(endpoints.uint8_dims, tf.uint8, name=INPUT_KEY)])
    archive.add_endpoint(NORMALIZED_SIGNATURE, endpoints.serve_normalized,
                         [tf.TensorSpec(endpoints.float_dims, tf.float32, name=INPUT_KEY)])
    archive.add_variable_collection(
        "class_names", [tf.Variable(class_names, trainable=False, dtype=tf.string, name="class_names")])
    archive.add_variable_collection(
        "metadata_json", [tf.Variable(json.dumps(meta), trainable=False, dtype=tf.string, name="metadata_json")])
    # Written beside the version folder, then renamed into place: TF Serving, which polls the base path,
    # never sees a half-written version.
    staging = os.path.join(export_dir, f".{version}.partial-{os.getpid()}")
    try:
        archive.write_out(staging, verbose=False)
        os.makedirs(os.path.join(staging, "assets"), exist_ok=True)
        with open(os.path.join(staging, "assets", METADATA_ASSET), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        if warmup:
            from keras_bert3d.serving.warmup import write_warmup_requests

            write_warmup_requests(staging, meta["model"], prep)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def read_metadata(path):
    """The export's ``assets/preprocessing.json``: model, version, class names, preprocessing, signatures."""
    with open(os.path.join(path, "assets", METADATA_ASSET), encoding="utf-8") as f:
        return json.load(f)


def export_onnx(model, path, batch_size=1, opset=None):
    """The normalised-clip forward pass (logits) as ONNX, through ``model.export`` (tf2onnx; ``pip install
    tf2onnx``), checked with ``onnx.checker`` (full shape inference). Input ``clips`` ``(batch_size, T, S, S,
    C)`` float32; ``batch_size=None`` for any batch (not with the LSTM head: tf2onnx then writes a MatMul of
    incompatible shapes, which the check refuses). Every family converts when traced on a CPU-only machine
    (ResNeXt's Bottleneck3D then convolves group by group); a Keras grouped ``Conv3D`` (compiled with XLA by
    Keras' TensorFlow backend, e.g. ResNeXt traced where a GPU is visible) leaves a TensorFlow function call
    that ONNX lacks: refused too. Returns ``path``; a refused file is deleted."""
    import importlib.util

    if importlib.util.find_spec("tf2onnx") is None:  # what model.export(format="onnx") uses
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx")
    import onnx
    spec = [tf.TensorSpec([batch_size, *model.input.shape[1:]], tf.float32, name=INPUT_KEY)]
    model.export(path, format="onnx", input_signature=spec, opset_version=opset, verbose=False)
    graph = onnx.load(path).graph
    unknown = sorted({node.op_type for node in graph.node if not onnx.defs.has(node.op_type, node.domain)})
    problem = f"tf2onnx left TensorFlow ops that ONNX lacks: {unknown} (grouped 3D convolutions compiled with " \
              "XLA?)" if unknown else None
    if problem is None:
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as err:  # ValidationError, InferenceError
            problem = f"tf2onnx wrote an invalid model: {' '.join(str(err).split())[:300]}" + (
                " (try batch_size=1)" if batch_size is None else "")
    if problem:
        os.remove(path)
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
    meta = read_metadata(saved_model_path)
    prep = meta["preprocessing"]
    channels = len(prep["mean"])
    if signature == NORMALIZED_SIGNATURE:
        shape, dtype = [prep["crop_size"], prep["crop_size"]], tf.float32
    elif signature == SERVING_SIGNATURE:
        shape, dtype = prep["frame_size"], tf.uint8
    else:
        raise ValueError(f"`signature` must be {SERVING_SIGNATURE!r} or {NORMALIZED_SIGNATURE!r}; "
                         f"received signature={signature!r}")
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
    with open(path, "wb") as f:
        f.write(data)
    return path


def run_litert(path, clips):
    """Run an `export_litert` file on ``clips`` (NumPy); returns its outputs as a dict of NumPy arrays."""
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    return {k: np.asarray(v) for k, v in runner(**{INPUT_KEY: clips}).items()}
