"""A VideoClassifier -> a SavedModel for TF Serving, preprocessing inside.

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
string variables, and ``assets/preprocessing.json`` (`signatures.read_metadata`). The signature names and
outputs are those of `keras_bert3d.serving.signatures`; ONNX and LiteRT files are written by
`keras_bert3d.serving.export_formats`, the warmup requests by `keras_bert3d.serving.warmup`.
"""
import json
import os
import shutil

import tensorflow as tf

from keras_bert3d.models.video_preprocessor import VideoPreprocessor, check_preprocessing
from keras_bert3d.serving.model_files import default_class_names, next_version
from keras_bert3d.serving.signatures import (INPUT_KEY, METADATA_ASSET, NORMALIZED_SIGNATURE, SERVING_SIGNATURE,
                                             TOP_K, metadata)
from keras_bert3d.serving.warmup import write_warmup_requests
from keras_bert3d.validation import check_positive_int


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

    import keras_bert3d.backend as backend

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
    check_positive_int("top_k", top_k)
    version = check_positive_int("version", next_version(export_dir) if version is None else version)
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
            write_warmup_requests(staging, meta["model"], prep)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
