"""TF Serving's gRPC ``PredictionService`` as a `VideoClient`.

``Predict`` (tensorflow-serving-api, imported when first used) with a uint8 ``TensorProto``; the signature's
input name and the model's frame count (``clip_len``) are read once from ``GetModelMetadata`` unless given.
"""
import re

from keras_bert3d.serving.signatures import SERVING_SIGNATURE
from keras_bert3d.serving.video_client import (METADATA_BYTES, ServingError, VideoClient, check_response_size,
                                               clip_len_from_shape, response_limit, uint8_clips)

REQUEST_MARGIN_BYTES = 2**20  # above a request's own size (`GrpcClient.channel_options`)
from keras_bert3d.validation import check_not_both


class GrpcClient(VideoClient):
    """TF Serving's gRPC ``PredictionService``.

    Args:
        target: ``host:8500``; ``stub`` replaces the channel (anything with ``Predict`` / ``GetModelMetadata``).
        input_name: the signature's input; ``None`` reads it once from ``GetModelMetadata``.

    The channel's message limits are what the model needs (`channel_options`): a request's size plus a margin
    out, and `video_client.response_limit` in (the batch's scores); a larger answer is a `ServingError`, as is
    a class index outside the answer's scores. A wider batch opens a wider channel.
    """

    def __init__(self, target, model_name, clip_len=None, version=None, label=None, signature_name=SERVING_SIGNATURE,
                 input_name=None, class_names=None, frame_size=None, timeout=60.0, stub=None):
        super().__init__(clip_len, class_names, frame_size)
        check_not_both("version", version, "label", label)
        self.target, self.model_name, self.version, self.label = target, model_name, version, label
        self.signature_name, self.input_name, self.timeout = signature_name, input_name, float(timeout)
        self._stub, self._own_channel, self._limits = stub, stub is None, (0, 0)

    @classmethod
    def from_url(cls, model_url, clip_len=None, **kwargs):
        """``grpc://host:8500/NAME[/N]`` -> a client (N: a version)."""
        match = re.match(r"^grpc://([^/]+)/([^/]+)(?:/(\d+))?/?$", str(model_url))
        if not match:
            raise ValueError(f"expected grpc://HOST:PORT/NAME[/VERSION]; received {model_url!r}")
        target, name, version = match.groups()
        return cls(target, name, clip_len, version=None if version is None else int(version), **kwargs)

    @staticmethod
    def channel_options(send_bytes, receive_bytes):
        """gRPC channel options limiting messages to ``send_bytes`` out and ``receive_bytes`` in."""
        return [("grpc.max_send_message_length", int(send_bytes)),
                ("grpc.max_receive_message_length", int(receive_bytes))]

    def _stub_for(self, send_bytes, receive_bytes):
        """The stub, on a channel whose limits cover ``send_bytes`` / ``receive_bytes`` (opened when needed)."""
        if self._own_channel and (self._stub is None or send_bytes > self._limits[0]
                                  or receive_bytes > self._limits[1]):
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            self._limits = (max(send_bytes, self._limits[0]), max(receive_bytes, self._limits[1]))
            channel = grpc.insecure_channel(self.target, options=self.channel_options(*self._limits))
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return self._stub

    @property
    def stub(self):
        return self._stub_for(REQUEST_MARGIN_BYTES, METADATA_BYTES)

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
        return clip_len_from_shape([d.size for d in info.tensor_shape.dim], f"{self.target} {self.model_name}")

    def build_request(self, clips):
        """The ``PredictRequest`` for uint8 clips ``(B, T, H, W, 3)``."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        clips = uint8_clips(clips)
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
        request = self.build_request(clips)
        limit = response_limit(len(clips), len(self.class_names))
        stub = self._stub_for(request.ByteSize() + REQUEST_MARGIN_BYTES, limit)
        response = self._call(stub.Predict, request)
        check_response_size(response.ByteSize(), limit, f"{self.target} {self.model_name}")
        return self.parse_response(response)
