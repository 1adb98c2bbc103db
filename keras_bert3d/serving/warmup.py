"""TF Serving warmup: ``<export>/assets.extra/tf_serving_warmup_requests``, and reading it back.

TF Serving replays these requests when it loads a version, before the version serves traffic, so the
first user request does not pay for graph optimisation and memory allocation. The file is a TFRecord
of ``PredictionLog`` protos (tensorflow-serving-api), each holding one ``PredictRequest`` (at most 1000
records; TF Serving reads only the ``predict_log`` / ``classify_log`` ... kind it was written with).
"""
import os

import numpy as np
import tensorflow as tf

from keras_bert3d.serving.signatures import INPUT_KEY, SERVING_SIGNATURE, SIGNATURES
from keras_bert3d.validation import check_choice

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit


def warmup_path(export_path):
    return os.path.join(export_path, WARMUP_DIR, WARMUP_FILE)


def warmup_clips(preprocessing, signature=SERVING_SIGNATURE, batch_size=1, seed=0):
    """Deterministic clips a signature accepts: uint8 at the ``frame_size`` (``serving_default``) or
    float32 normalised crops (``predict_normalized``)."""
    check_choice("signature", signature, SIGNATURES)
    rng = np.random.default_rng(seed)
    frames, channels = int(preprocessing["num_frames"]), len(preprocessing["mean"])
    if signature == SERVING_SIGNATURE:
        height, width = preprocessing["frame_size"]
        return rng.integers(0, 256, size=(batch_size, frames, height, width, channels), dtype=np.uint8)
    size = int(preprocessing["crop_size"])
    return rng.standard_normal((batch_size, frames, size, size, channels)).astype(np.float32)


def make_request(model_name, clips, signature=SERVING_SIGNATURE, version=None):
    """A ``PredictRequest`` for ``clips`` (NumPy array, sent as-is: its dtype must be the signature's)."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(np.asarray(clips)))
    return request


def write_warmup_requests(export_path, model_name, preprocessing, signatures=(SERVING_SIGNATURE,),
                          batch_sizes=(1,), seed=0):
    """Write one request per (signature, batch size) into the export's warmup file; returns its path."""
    from tensorflow_serving.apis import prediction_log_pb2

    if not os.path.isfile(os.path.join(export_path, "saved_model.pb")):
        raise FileNotFoundError(f"{export_path} is not a SavedModel directory (no saved_model.pb)")
    records = [(s, int(b)) for s in signatures for b in batch_sizes]
    if not records or len(records) > MAX_RECORDS or min(b for _, b in records) < 1:
        raise ValueError(f"need 1 to {MAX_RECORDS} requests of positive batch size; received "
                         f"signatures={signatures!r}, batch_sizes={batch_sizes!r}")
    path = warmup_path(export_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, batch_size in records:
            clips = warmup_clips(preprocessing, signature, batch_size, seed)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=make_request(model_name, clips, signature)))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path):
    """The ``PredictRequest`` protos of a warmup file (or of an export directory's warmup file)."""
    from tensorflow_serving.apis import prediction_log_pb2

    if os.path.isdir(path):
        path = warmup_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no warmup file at {path}")
    requests = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: a record holds a {log.WhichOneof('log_type')}, not a predict_log")
        requests.append(log.predict_log.request)
    return requests


def request_inputs(request):
    """``{input name: np.ndarray}`` of a ``PredictRequest``."""
    return {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}


def answer_request(loaded, request):
    """What a loaded SavedModel (``tf.saved_model.load``) answers to ``request``: its signature's outputs
    as NumPy arrays, as TF Serving would compute them."""
    signature = request.model_spec.signature_name or SERVING_SIGNATURE
    if signature not in loaded.signatures:
        raise ValueError(f"the SavedModel has no signature {signature!r}; it has {sorted(loaded.signatures)}")
    inputs = {key: tf.constant(value) for key, value in request_inputs(request).items()}
    return {key: value.numpy() for key, value in loaded.signatures[signature](**inputs).items()}
