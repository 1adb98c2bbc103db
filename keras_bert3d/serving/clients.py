"""Clients that classify a video file with an exported model: TF Serving over REST or gRPC, or in-process.

Every client turns a video into clips the same way (`sample_clips`: the reference's multi-clip ``"cover"``,
the centred ``"center"`` clip, or K uniform clips), decodes them a batch at a time (`clip_batches`; memory
stays one batch of clips whatever the video's length), sends each batch as one request and aggregates the
clip scores into one prediction (`aggregate`).

Aggregation: ``"logits"`` (default) is the reference's rule (REFERENCE.md 5.12: the mean of the clips' raw
logits, then the softmax), from the response's ``logits`` (`export_saved_model` returns them). From a server
that returns only ``probabilities`` it is the same number: ``log p = logits - lse`` and the per-clip constant
``lse`` cancels in the softmax, so ``softmax(mean(log p)) == softmax(mean(logits))``. ``"probabilities"``
averages the clips' probabilities instead. Single centre crop per clip (the export's rule), not ten crops.

- `RestClient`: ``POST {url}/v1/models/<name>[/versions/N | /labels/L]:predict`` with a JSON body in the row
  (``"instances"``) or columnar (``"inputs"``) format; stdlib ``urllib`` unless a ``transport`` is given.
- `GrpcClient`: ``PredictionService/Predict`` (tensorflow-serving-api) with a uint8 ``TensorProto``; the input
  name is read once from ``GetModelMetadata`` unless given.
- `SavedModelClient`: the export's ``serving_default`` signature called in this process.
- `KerasClient`: a Keras model, with the preset's preprocessing done here by the export's own function
  (`export.preprocess_clips`: resize to ``frame_size``, centre crop to ``crop_size``, normalise).

Requests carry uint8 frames as decoded (any size: the export resizes). ``frame_size=[H, W]`` resizes them
here first, with the same bilinear op, to make REST bodies smaller; with the export's own ``frame_size`` the
graph's resize is then the identity and the answer does not change. Served clients read ``clip_len`` (the
model's ``num_frames``) from the served signature's shape, which `export_saved_model` fixes; give it
explicitly for a signature that leaves it open.
"""
import json
import os
import re
import typing
import urllib.error
import urllib.request

import numpy as np

from keras_bert3d.data import sampling
from keras_bert3d.data.sampling import parse_clips
from keras_bert3d.data.video_reader import probe, read_frames

AGGREGATIONS = ("logits", "probabilities")
DEFAULT_SIGNATURE = "serving_default"
REQUEST_FORMATS = ("instances", "inputs")
_TINY = np.finfo(np.float32).tiny


class ServingError(RuntimeError):
    """The server refused a request or could not be reached; the message carries its own words."""


class VideoPrediction(typing.NamedTuple):
    """A video's multi-clip prediction."""

    path: str
    num_frames: int  # frames in the video
    clip_indices: np.ndarray  # (K, T) 0-based frame indices of each clip
    clip_scores: np.ndarray  # (K, C) each clip's logits or probabilities (see ``score_kind``)
    score_kind: str  # "logits" or "probabilities"
    probabilities: np.ndarray  # (C,) aggregated
    top: list  # [(index, class name, probability)], best first
    class_names: list  # names known to the client (index -> name); may be shorter than C


def sample_clips(path, clip_len, clips="cover", stride=1):
    """Probes ``path`` and returns ``(num_frames, indices (K, clip_len))``; raises `VideoDecodeError`
    (its message names the file) when the video will not decode."""
    info = probe(path)
    return info.num_frames, sampling.eval_clips(info.num_frames, clip_len, parse_clips(clips), stride)


def clip_batches(path, indices, batch_size=4, frame_size=None):
    """Yields uint8 ``(b, T, H, W, 3)`` batches of the clips ``indices`` (K, T), decoding one clip at a time;
    ``frame_size=[H, W]``: resized here with `transforms.resize` (the export's op)."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; received batch_size={batch_size}")
    for start in range(0, len(indices), int(batch_size)):
        clips = [read_frames(path, row) for row in indices[start:start + int(batch_size)]]
        if frame_size is not None:
            import tensorflow as tf

            from keras_bert3d.data import transforms

            clips = [transforms.resize(tf.constant(c), [int(v) for v in frame_size]).numpy() for c in clips]
        yield np.stack(clips)


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def aggregate(scores, score_kind="probabilities", method="logits"):
    """(K, C) clip scores -> (C,) video probabilities (see the module docstring)."""
    if method not in AGGREGATIONS:
        raise ValueError(f"method must be one of {AGGREGATIONS}; received method={method!r}")
    if score_kind not in ("logits", "probabilities"):
        raise ValueError(f"score_kind must be 'logits' or 'probabilities'; received score_kind={score_kind!r}")
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or not len(scores):
        raise ValueError(f"scores must be (clips, classes) with clips >= 1; received shape {scores.shape}")
    if method == "logits":
        logits = scores if score_kind == "logits" else np.log(np.maximum(scores, _TINY))
        return softmax(logits.mean(axis=0))
    probabilities = scores if score_kind == "probabilities" else softmax(scores)
    return probabilities.mean(axis=0)


def class_name(class_names, index):
    return class_names[index] if index < len(class_names) and class_names[index] else f"class_{index}"


def _check_version(version, label):
    if version is not None and label is not None:
        raise ValueError(f"give a version or a label, not both; received version={version}, label={label!r}")


class VideoClient:
    """The shared video -> clips -> requests -> aggregate loop; subclasses implement `predict_clips`."""

    def __init__(self, clip_len, class_names=None, frame_size=None):
        self._clip_len = int(clip_len) if clip_len is not None else None
        self.class_names = list(class_names or [])
        self.frame_size = None if frame_size is None else [int(v) for v in frame_size]

    @property
    def clip_len(self):
        """Frames per clip: given, or read once from the served signature's input shape."""
        if self._clip_len is None:
            self._clip_len = self.served_clip_len()
        return self._clip_len

    def served_clip_len(self):
        raise ValueError("this client does not know the model's frame count; pass clip_len=")

    def predict_clips(self, clips):
        """uint8 ``(B, T, H, W, 3)`` -> dict of numpy outputs, one row per clip."""
        raise NotImplementedError

    def _learn_names(self, outputs):
        """Fills the class names from a response's ``top_k_indices`` / ``top_k_classes``."""
        if "top_k_indices" not in outputs or "top_k_classes" not in outputs:
            return
        for row_i, row_c in zip(np.asarray(outputs["top_k_indices"]), np.asarray(outputs["top_k_classes"])):
            for index, name in zip(row_i.tolist(), row_c.tolist()):
                name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
                if index >= len(self.class_names):
                    self.class_names += [""] * (index + 1 - len(self.class_names))
                if not self.class_names[index]:
                    self.class_names[index] = name

    def predict_video(self, path, clips="cover", batch_size=4, stride=1, top=5, method="logits", progress=None):
        """Classifies the video at ``path``.

        Args:
            clips: ``"cover"`` (the reference's non-overlapping multi-clip cover), ``"center"`` or K.
            batch_size: clips per request.
            progress: ``None`` or a factory ``progress(total) -> bar`` with ``update(n)`` and ``close()``
                (e.g. ``functools.partial(tqdm.tqdm, unit="clip")``).

        Returns:
            A `VideoPrediction`. Raises `VideoDecodeError` (naming the file) for a video that will not decode.
        """
        path = os.fspath(path)
        num_frames, indices = sample_clips(path, self.clip_len, clips, stride)
        bar = progress(len(indices)) if progress is not None else None
        scores, kind = [], None
        try:
            for batch in clip_batches(path, indices, batch_size, self.frame_size):
                outputs = self.predict_clips(batch)
                self._learn_names(outputs)
                kind = kind or next((k for k in ("logits", "probabilities") if k in outputs), None)
                if kind not in outputs:
                    raise ServingError(f"the response has no 'logits' or 'probabilities': {sorted(outputs)}")
                scores.append(np.asarray(outputs[kind], np.float64).reshape(len(batch), -1))
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        scores = np.concatenate(scores)
        probabilities = aggregate(scores, kind, method)
        best = np.argsort(-probabilities, kind="stable")[:int(top)]
        ranked = [(int(k), class_name(self.class_names, int(k)), float(probabilities[k])) for k in best]
        return VideoPrediction(path, num_frames, indices, scores, kind, probabilities, ranked,
                               list(self.class_names))


def _clip_len_from_dims(dims, where):
    """T of a served ``(B, T, H, W, 3)`` input shape (dims as ints; -1 unknown)."""
    dims = [int(d) for d in dims]
    if len(dims) != 5 or dims[1] < 1:
        raise ServingError(f"{where}: the served input shape ({dims or 'unknown rank'}) does not fix the frame "
                           "count; pass clip_len=")
    return dims[1]


def _http(url, body, timeout):
    """The default REST transport: a POST of ``body`` (a GET when None) with the stdlib; HTTP errors become
    `ServingError` carrying the server's message."""
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise ServingError(f"{url}: HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        raise ServingError(f"{url}: cannot reach the server ({getattr(err, 'reason', err)})") from None


class RestClient(VideoClient):
    """TF Serving's REST predict API.

    Args:
        url: the server, ``http://host:8501``.
        model_name: the served model's name; ``version`` (int) or ``label`` (str) pick one of its versions.
        clip_len: frames per clip (the model's ``num_frames``); ``None`` reads it from the model's metadata
            (``GET .../metadata``: the signature's input shape).
        request_format: ``"instances"`` (row format: one instance per clip) or ``"inputs"`` (columnar).
        input_name: ``None`` (the signature's only input, unnamed in the body) or the input's name.
        transport: ``None`` (urllib) or ``transport(url, body_bytes, timeout) -> response bytes`` (``body``
            None: a GET, for the metadata).
    """

    def __init__(self, url, model_name, clip_len=None, version=None, label=None, signature_name=DEFAULT_SIGNATURE,
                 request_format="instances", input_name=None, class_names=None, frame_size=None, timeout=60.0,
                 transport=None):
        super().__init__(clip_len, class_names, frame_size)
        if request_format not in REQUEST_FORMATS:
            raise ValueError(f"request_format must be one of {REQUEST_FORMATS}; received {request_format!r}")
        _check_version(version, label)
        if not re.match(r"^https?://", str(url)):
            raise ValueError(f"url must start with http:// or https://; received url={url!r}")
        self.url = str(url).rstrip("/")
        self.model_name, self.version, self.label = model_name, version, label
        self.signature_name, self.request_format, self.input_name = signature_name, request_format, input_name
        self.timeout = float(timeout)
        self.transport = transport or _http

    @classmethod
    def from_url(cls, model_url, clip_len=None, **kwargs):
        """``http://host:8501/v1/models/NAME[/versions/N | /labels/L]`` -> a client."""
        match = re.match(r"^(https?://[^/]+)/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(?::predict)?/?$",
                         str(model_url))
        if not match:
            raise ValueError("expected http://HOST:PORT/v1/models/NAME[/versions/N | /labels/L]; "
                             f"received {model_url!r}")
        url, name, version, label = match.groups()
        return cls(url, name, clip_len, version=None if version is None else int(version), label=label, **kwargs)

    @property
    def model_url(self):
        path = f"/v1/models/{self.model_name}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.label is not None:
            path += f"/labels/{self.label}"
        return self.url + path

    @property
    def predict_url(self):
        return self.model_url + ":predict"

    def served_clip_len(self):
        url = self.model_url + "/metadata"
        metadata = json.loads(self.transport(url, None, self.timeout))
        try:
            signature = metadata["metadata"]["signature_def"]["signature_def"][self.signature_name]
            inputs = signature["inputs"]
            spec = inputs[self.input_name] if self.input_name else next(iter(inputs.values()))
            dims = [d.get("size", -1) for d in spec.get("tensor_shape", {}).get("dim", [])]  # none: unknown rank
        except (KeyError, TypeError, AttributeError, StopIteration):
            raise ServingError(f"{url}: no input shape for signature {self.signature_name!r} in the "
                               f"metadata: {str(metadata)[:300]}") from None
        return _clip_len_from_dims(dims, url)

    def request_body(self, clips):
        """The JSON body (a dict) for uint8 clips ``(B, T, H, W, 3)``."""
        clips = np.asarray(clips)
        if clips.dtype != np.uint8 or clips.ndim != 5:
            raise ValueError(f"clips must be uint8 (B, T, H, W, 3); received {clips.dtype} {clips.shape}")
        body = {"signature_name": self.signature_name}
        if self.request_format == "instances":
            rows = clips.tolist()
            body["instances"] = rows if self.input_name is None else [{self.input_name: row} for row in rows]
        else:
            body["inputs"] = clips.tolist() if self.input_name is None else {self.input_name: clips.tolist()}
        return body

    @staticmethod
    def parse_response(response):
        """A response (bytes, str or dict) -> ``{output name: array}``, whichever format it came in."""
        if isinstance(response, (bytes, str)):
            response = json.loads(response)
        if "error" in response:
            raise ServingError(str(response["error"]))
        if "predictions" in response:  # row format: a list of per-instance dicts (or values: one output)
            rows = response["predictions"]
            if rows and isinstance(rows[0], dict):
                return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}
            return {"outputs": np.asarray(rows)}
        if "outputs" in response:  # columnar format
            outputs = response["outputs"]
            return {k: np.asarray(v) for k, v in outputs.items()} if isinstance(outputs, dict) else \
                {"outputs": np.asarray(outputs)}
        raise ServingError(f"unexpected response (no 'predictions' or 'outputs'): {str(response)[:200]}")

    def predict_clips(self, clips):
        body = json.dumps(self.request_body(clips), separators=(",", ":")).encode("utf-8")
        outputs = self.parse_response(self.transport(self.predict_url, body, self.timeout))
        if set(outputs) == {"outputs"}:  # a single-output signature: take it as probabilities
            outputs = {"probabilities": outputs["outputs"]}
        return outputs


class GrpcClient(VideoClient):
    """TF Serving's gRPC ``PredictionService``.

    Args:
        target: ``host:8500``; ``stub`` replaces the channel (anything with ``Predict`` / ``GetModelMetadata``).
        input_name: the signature's input; ``None`` reads it once from ``GetModelMetadata``.
    """

    def __init__(self, target, model_name, clip_len=None, version=None, label=None, signature_name=DEFAULT_SIGNATURE,
                 input_name=None, class_names=None, frame_size=None, timeout=60.0, stub=None):
        super().__init__(clip_len, class_names, frame_size)
        _check_version(version, label)
        self.target, self.model_name, self.version, self.label = target, model_name, version, label
        self.signature_name, self.input_name, self.timeout = signature_name, input_name, float(timeout)
        self._stub = stub

    @classmethod
    def from_url(cls, model_url, clip_len=None, **kwargs):
        """``grpc://host:8500/NAME[/N]`` -> a client (N: a version)."""
        match = re.match(r"^grpc://([^/]+)/([^/]+)(?:/(\d+))?/?$", str(model_url))
        if not match:
            raise ValueError(f"expected grpc://HOST:PORT/NAME[/VERSION]; received {model_url!r}")
        target, name, version = match.groups()
        return cls(target, name, clip_len, version=None if version is None else int(version), **kwargs)

    @property
    def stub(self):
        if self._stub is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
                grpc.insecure_channel(self.target, options=options))
        return self._stub

    def _model_spec(self, spec):
        spec.name = self.model_name
        spec.signature_name = self.signature_name
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.label is not None:
            spec.version_label = self.label

    def metadata_request(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        return request

    def _served_input(self):
        """(name, TensorInfo) of the signature's input, from ``GetModelMetadata``."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self._call(self.stub.GetModelMetadata, self.metadata_request())
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        if self.signature_name not in signatures.signature_def:
            raise ServingError(f"{self.model_name} has no signature {self.signature_name!r}; it has "
                               f"{sorted(signatures.signature_def)}")
        inputs = signatures.signature_def[self.signature_name].inputs
        if self.input_name is not None:
            return self.input_name, inputs[self.input_name]
        if len(inputs) != 1:
            raise ServingError(f"signature {self.signature_name!r} has inputs {sorted(inputs)}; pass input_name=")
        return next(iter(inputs.items()))

    def resolve_input_name(self):
        """The signature's only input name, from ``GetModelMetadata`` (cached)."""
        if self.input_name is None:
            self.input_name = self._served_input()[0]
        return self.input_name

    def served_clip_len(self):
        name, info = self._served_input()
        self.input_name = name
        return _clip_len_from_dims([d.size for d in info.tensor_shape.dim], f"{self.target} {self.model_name}")

    def build_request(self, clips):
        """The ``PredictRequest`` for uint8 clips ``(B, T, H, W, 3)``."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        clips = np.asarray(clips)
        if clips.dtype != np.uint8 or clips.ndim != 5:
            raise ValueError(f"clips must be uint8 (B, T, H, W, 3); received {clips.dtype} {clips.shape}")
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec)
        request.inputs[self.resolve_input_name()].CopyFrom(tf.make_tensor_proto(clips))
        return request

    @staticmethod
    def parse_response(response):
        import tensorflow as tf

        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except Exception as err:  # grpc.RpcError carries code() and details()
            if hasattr(err, "code") and hasattr(err, "details"):
                raise ServingError(f"{self.target} {self.model_name}: {err.code()}: {err.details()}") from None
            raise

    def predict_clips(self, clips):
        return self.parse_response(self._call(self.stub.Predict, self.build_request(clips)))


# The in-process clients live in local_clients.py; re-exported here so `clients.KerasClient` keeps working.
from keras_bert3d.serving.local_clients import KerasClient, SavedModelClient  # noqa: E402,F401
