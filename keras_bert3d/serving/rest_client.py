"""TF Serving's REST predict API as a `VideoClient`.

``POST {url}/v1/models/<name>[/versions/N | /labels/L]:predict`` with a JSON body in the row (``"instances"``)
or columnar (``"inputs"``) format; stdlib ``urllib`` unless a ``transport`` is given. The model's frame count
(``clip_len``) is read from ``GET .../metadata`` (the served signature's input shape, which
`export.export_saved_model` fixes) unless given.
"""
import json
import re
import urllib.error
import urllib.request

import numpy as np

from keras_bert3d.serving.signatures import SERVING_SIGNATURE
from keras_bert3d.serving.video_client import (METADATA_BYTES, ServingError, VideoClient, check_response_size,
                                               clip_len_from_shape, response_limit, uint8_clips)
from keras_bert3d.validation import check_choice, check_not_both

REQUEST_FORMATS = ("instances", "inputs")


ERROR_BYTES = 64 * 2**10  # of an HTTP error's body, for its message


def _read_at_most(response, max_bytes, url):
    """At most ``max_bytes`` of an HTTP response (its Content-Length checked first); more: a `ServingError`."""
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit():
        check_response_size(int(length), max_bytes, url)
    data = response.read(max_bytes + 1)
    check_response_size(len(data), max_bytes, url)
    return data


def _http(url, body, timeout, max_bytes=METADATA_BYTES):
    """The default REST transport: a POST of ``body`` (a GET when None) with the stdlib, reading at most
    ``max_bytes`` of the answer; HTTP errors become `ServingError` carrying the server's message."""
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _read_at_most(response, max_bytes, url)
    except urllib.error.HTTPError as err:
        detail = err.read(ERROR_BYTES).decode("utf-8", "replace")
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

    An answer is read up to what the model's scores need (`video_client.response_limit`: the batch's clips
    times the classes, ``class_names``' count but at least `video_client.MAX_CLASSES`, plus a margin); a longer one is a
    `ServingError`, as is a class index outside the answer's scores.
    """

    def __init__(self, url, model_name, clip_len=None, version=None, label=None, signature_name=SERVING_SIGNATURE,
                 request_format="instances", input_name=None, class_names=None, frame_size=None, timeout=60.0,
                 transport=None):
        super().__init__(clip_len, class_names, frame_size)
        check_choice("request_format", request_format, REQUEST_FORMATS)
        check_not_both("version", version, "label", label)
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

    def _send(self, url, body, max_bytes):
        """The answer to ``body`` (None: a GET) at ``url``, at most ``max_bytes`` long (else a ServingError)."""
        if self.transport is _http:
            return _http(url, body, self.timeout, max_bytes)
        response = self.transport(url, body, self.timeout)
        if isinstance(response, (bytes, str)):
            check_response_size(len(response), max_bytes, url)
        return response

    def served_clip_len(self):
        url = self.model_url + "/metadata"
        metadata = json.loads(self._send(url, None, METADATA_BYTES))
        try:
            signature = metadata["metadata"]["signature_def"]["signature_def"][self.signature_name]
            inputs = signature["inputs"]
            spec = inputs[self.input_name] if self.input_name else next(iter(inputs.values()))
            dims = [d.get("size", -1) for d in spec.get("tensor_shape", {}).get("dim", [])]  # none: unknown rank
        except (KeyError, TypeError, AttributeError, StopIteration):
            raise ServingError(f"{url}: no input shape for signature {self.signature_name!r} in the "
                               f"metadata: {str(metadata)[:300]}") from None
        return clip_len_from_shape(dims, url)

    def request_body(self, clips):
        """The JSON body (a dict) for uint8 clips ``(B, T, H, W, 3)``."""
        clips = uint8_clips(clips)
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
        limit = response_limit(len(clips), len(self.class_names) or None)
        outputs = self.parse_response(self._send(self.predict_url, body, limit))
        if set(outputs) == {"outputs"}:  # a single-output signature: take it as probabilities
            outputs = {"probabilities": outputs["outputs"]}
        return outputs
