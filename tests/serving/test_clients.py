"""The serving clients: the requests they build (no server), their answers against the exported model loaded in
this process (a TF Serving stand-in behind a fake REST transport and a fake gRPC stub), and over real sockets on
127.0.0.1 (a tiny HTTP server and a gRPC server, both bounded)."""
import http.server
import json
import threading
import time
import urllib.parse
from concurrent import futures

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.cli import COMMANDS, main
from keras_bert3d.data import sampling, transforms
from keras_bert3d.data.synthetic import write_video
from keras_bert3d.data.video_reader import read_frames
from keras_bert3d.models.builder import build_model
from keras_bert3d.serving import video_client
from keras_bert3d.serving.export import export_saved_model
from keras_bert3d.serving.grpc_client import GrpcClient
from keras_bert3d.serving.local_clients import KerasClient, SavedModelClient
from keras_bert3d.serving.rest_client import RestClient
from keras_bert3d.serving.video_client import ServingError
from models.tiny_presets import TINY_R2PLUS1D_BERT

TINY = dict(TINY_R2PLUS1D_BERT, num_frames=16)
NUM_CLASSES = 6
CLASS_NAMES = ["walk", "run", "jump", "swim", "climb", "wave"]
VIDEO_FRAMES = 60
SERVER_DEADLINE_S = 60.0  # the local servers stop by themselves after this, whatever happens


class ServingStandIn:
    """TF Serving's predict semantics over a loaded export: REST bodies (row and columnar formats, metadata
    GET) and the gRPC ``Predict`` / ``GetModelMetadata`` calls."""

    def __init__(self, export_path, name="tiny"):
        self.name, self.loaded, self.requests = name, tf.saved_model.load(export_path), []

    def _run(self, signature_name, inputs):
        signature = self.loaded.signatures[signature_name]
        specs = signature.structured_input_signature[1]
        arrays = {k: tf.constant(np.asarray(v, specs[k].dtype.as_numpy_dtype)) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in signature(**arrays).items()}

    # REST: transport(url, body, timeout) -> (status, bytes)
    def rest(self, url, body):
        path = urllib.parse.urlparse(url).path
        self.requests.append(path)
        if not path.startswith(f"/v1/models/{self.name}"):
            return 404, json.dumps({"error": f"Servable not found for request: {path}"}).encode()
        if body is None and path.endswith("/metadata"):
            return 200, json.dumps({"metadata": {"signature_def": {"signature_def": self._rest_signatures()}}}).encode()
        request = json.loads(body)
        signature_name = request.get("signature_name", "serving_default")
        input_name = next(iter(self.loaded.signatures[signature_name].structured_input_signature[1]))
        rows = "instances" in request
        data = request["instances"] if rows else request["inputs"]
        if rows and isinstance(data[0], dict):
            inputs = {k: [row[k] for row in data] for k in data[0]}
        else:
            inputs = data if isinstance(data, dict) else {input_name: data}
        try:
            out = self._run(signature_name, inputs)
        except tf.errors.InvalidArgumentError as err:
            return 400, json.dumps({"error": err.message}).encode()
        out = {k: np.char.decode(v.astype(bytes)).tolist() if v.dtype.kind in "SO" else v.tolist()
               for k, v in out.items()}
        if rows:
            batch = len(next(iter(out.values())))
            return 200, json.dumps({"predictions": [{k: v[i] for k, v in out.items()} for i in range(batch)]}).encode()
        return 200, json.dumps({"outputs": out}).encode()

    def transport(self, url, body, timeout):
        status, data = self.rest(url, body)
        if status != 200:
            raise ServingError(f"{url}: HTTP {status}: {json.loads(data)['error']}")
        return data

    def _tensor_info(self, spec, info):
        info.dtype = spec.dtype.as_datatype_enum
        if spec.shape.rank is None:
            info.tensor_shape.unknown_rank = True
        else:
            for d in spec.shape:
                info.tensor_shape.dim.add(size=-1 if d is None else d)

    def _signature_map(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        out = get_model_metadata_pb2.SignatureDefMap()
        for name, fn in self.loaded.signatures.items():
            for key, spec in fn.structured_input_signature[1].items():
                self._tensor_info(spec, out.signature_def[name].inputs[key])
            for key, spec in fn.structured_outputs.items():
                self._tensor_info(spec, out.signature_def[name].outputs[key])
        return out

    def _rest_signatures(self):
        from google.protobuf import json_format

        return json_format.MessageToDict(self._signature_map(), preserving_proto_field_name=True)["signature_def"]

    # gRPC stub / servicer methods
    def Predict(self, request, timeout=None, context=None):  # noqa: N802 - the gRPC method name
        from tensorflow_serving.apis import predict_pb2

        self.requests.append(request)
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        for key, value in self._run(request.model_spec.signature_name or "serving_default", inputs).items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, timeout=None, context=None):  # noqa: N802
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.metadata["signature_def"].Pack(self._signature_map())
        return response


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients")
    model = build_model("rgb_r2plus1d_32f_34_bert10", NUM_CLASSES, **TINY)
    export = export_saved_model(model, str(root / "tiny"), class_names=CLASS_NAMES, version=3, warmup=False)
    rng = np.random.default_rng(0)
    frames = rng.integers(30, 200, size=(VIDEO_FRAMES, 48, 64, 3), dtype=np.uint8)
    frames[20:40, 16:32, 24:40] = (230, 40, 40)
    video = root / "video.mp4"
    write_video(video, frames)
    return model, export, str(video), ServingStandIn(export)


def reference_probabilities(model, video, clips):
    """The Keras model on each clip with the pipeline's val transforms; the mean of the logits, softmax."""
    prep = model.preprocessing
    logits = []
    for row in clips:
        frames = transforms.resize(tf.constant(read_frames(video, row)), prep["frame_size"])
        clip = transforms.normalize(transforms.center_crop(frames, prep["crop_size"]), prep)
        logits.append(np.asarray(model(clip[None], training=False))[0])
    return video_client.softmax(np.mean(logits, axis=0))


def test_parse_clips_and_sampling(served):
    _, _, video, _ = served
    assert sampling.parse_clips("3") == 3 and sampling.parse_clips("cover") == "cover"
    for bad in ("0", "ten", 0, True):
        with pytest.raises(ValueError, match="clips"):
            sampling.parse_clips(bad)
    num_frames, indices = video_client.sample_clips(video, TINY["num_frames"], "cover")
    assert num_frames == VIDEO_FRAMES
    np.testing.assert_array_equal(indices, sampling.cover_clips(VIDEO_FRAMES, TINY["num_frames"]))
    _, uniform = video_client.sample_clips(video, TINY["num_frames"], 5)
    assert uniform.shape == (5, TINY["num_frames"])
    batches = list(video_client.clip_batches(video, uniform, batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(batches[2][0], read_frames(video, uniform[4]))


def test_aggregate_logits_equals_mean_log_probabilities():
    logits = np.random.default_rng(1).normal(0, 3, size=(4, 7))
    expected = video_client.softmax(logits.mean(axis=0))
    np.testing.assert_allclose(video_client.aggregate(logits, "logits"), expected, atol=1e-12)
    probabilities = video_client.softmax(logits)
    np.testing.assert_allclose(video_client.aggregate(probabilities, "probabilities"), expected, atol=1e-9)
    mean_p = video_client.aggregate(logits, "logits", method="probabilities")
    np.testing.assert_allclose(mean_p, video_client.softmax(logits).mean(axis=0), atol=1e-12)
    assert not np.allclose(mean_p, expected, atol=1e-3)  # the two rules differ: the choice matters
    with pytest.raises(ValueError, match="median"):
        video_client.aggregate(logits, "logits", method="median")


def test_rest_request_bodies():
    clips = np.random.default_rng(2).integers(0, 256, size=(2, 4, 6, 8, 3), dtype=np.uint8)
    client = RestClient("http://serving:8501/", "tiny", 4, version=3)
    assert client.predict_url == "http://serving:8501/v1/models/tiny/versions/3:predict"
    body = client.request_body(clips)
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 2
    np.testing.assert_array_equal(np.asarray(body["instances"][1], np.uint8), clips[1])
    named = RestClient("http://h:1", "tiny", 4, label="stable", request_format="inputs", input_name="clips")
    assert named.predict_url == "http://h:1/v1/models/tiny/labels/stable:predict"
    np.testing.assert_array_equal(np.asarray(named.request_body(clips)["inputs"]["clips"], np.uint8), clips)
    parsed = RestClient.from_url("https://h:8501/v1/models/m/versions/12", 4)
    assert (parsed.url, parsed.model_name, parsed.version) == ("https://h:8501", "m", 12)
    outputs = client.parse_response({"predictions": [{"probabilities": [0.25, 0.75]}, {"probabilities": [1, 0]}]})
    np.testing.assert_array_equal(outputs["probabilities"], [[0.25, 0.75], [1, 0]])
    with pytest.raises(ValueError, match="float32"):
        client.request_body(clips.astype(np.float32))
    with pytest.raises(ValueError, match="request_format"):
        RestClient("http://h:1", "m", 4, request_format="rows")
    with pytest.raises(ValueError, match="ftp://h"):
        RestClient("ftp://h", "m", 4)
    with pytest.raises(ValueError, match="give a version or a label, not both"):
        RestClient("http://h:1", "m", 4, version=1, label="stable")
    with pytest.raises(ServingError, match="not found"):
        client.parse_response(b'{"error": "Servable not found"}')


def test_grpc_request(served):
    _, _, _, stand_in = served
    clips = np.random.default_rng(3).integers(0, 256, size=(2, 16, 6, 8, 3), dtype=np.uint8)
    client = GrpcClient("localhost:8500", "tiny", 16, version=3, stub=stand_in)
    request = client.build_request(clips)  # the input name comes from GetModelMetadata
    assert client.input_name == "clips"
    assert (request.model_spec.name, request.model_spec.version.value) == ("tiny", 3)
    assert request.model_spec.signature_name == "serving_default"
    sent = tf.make_ndarray(request.inputs["clips"])
    assert sent.dtype == np.uint8
    np.testing.assert_array_equal(sent, clips)
    parsed = GrpcClient.from_url("grpc://h:8500/tiny/7")
    assert (parsed.target, parsed.model_name, parsed.version) == ("h:8500", "tiny", 7)
    # The export's signature fixes the frame count: the client reads it from the model metadata.
    assert GrpcClient("h:8500", "tiny", stub=stand_in).clip_len == 16


def test_clients_agree_with_the_keras_model(served):
    model, export, video, stand_in = served
    indices = sampling.cover_clips(VIDEO_FRAMES, TINY["num_frames"])
    expected = reference_probabilities(model, video, indices)
    runs = {
        "keras": KerasClient(model),
        "saved_model": SavedModelClient(export),
        "rest_instances": RestClient("http://x:1", "tiny", 16, transport=stand_in.transport),
        "rest_inputs": RestClient("http://x:1", "tiny", 16, request_format="inputs",
                                          input_name="clips", transport=stand_in.transport),
        "grpc": GrpcClient("x:1", "tiny", 16, stub=stand_in),
    }
    for name, client in runs.items():
        result = client.predict_video(video, clips="cover", batch_size=2)
        np.testing.assert_array_equal(result.clip_indices, indices, err_msg=name)
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-5, err_msg=name)
        assert result.score_kind == "logits", name
        assert [i for i, _, _ in result.top] == list(np.argsort(-expected)[:5]), name
        if name != "keras":  # the export carries its class names
            assert [c for _, c, _ in result.top] == [CLASS_NAMES[i] for i, _, _ in result.top], name
    assert runs["keras"].predict_video(video).top[0][1].startswith("class_")  # no names given
    # Frames resized to the export's frame_size before sending: the graph's resize is then the identity.
    resized = next(video_client.clip_batches(video, indices[:1], frame_size=model.preprocessing["frame_size"]))
    assert resized.shape[2:4] == tuple(model.preprocessing["frame_size"])
    np.testing.assert_array_equal(runs["saved_model"].predict_clips(resized)["logits"],
                                  runs["saved_model"].predict_clips(read_frames(video, indices[0])[None])["logits"])
    # Probabilities averaged instead: a different rule, still a distribution.
    mean_p = runs["grpc"].predict_video(video, clips=3, method="probabilities").probabilities
    assert abs(mean_p.sum() - 1) < 1e-6


def test_rest_refusal_carries_the_servers_message(served):
    _, _, video, stand_in = served
    client = RestClient("http://x:1", "tiny", 8, transport=stand_in.transport)
    with pytest.raises(ServingError, match=r"expects `clips` of dtype uint8 and shape \(batch, 16,"):
        client.predict_video(video, clips="center")


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 10  # seconds a connection may stay silent

    def _answer(self, body):
        status, data = self.server.stand_in.rest(f"http://127.0.0.1{self.path}", body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._answer(None)

    def do_POST(self):  # noqa: N802
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, *args):
        pass


class _BoundedServer(http.server.HTTPServer):
    """One request at a time on 127.0.0.1; `serve` stops after ``max_requests``, at the deadline or on ``stop``."""

    timeout = 0.2  # handle_request() returns after this when no request comes

    def __init__(self, stand_in, max_requests=20):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stand_in, self.max_requests, self.handled, self.stop = stand_in, max_requests, 0, False

    def finish_request(self, request, client_address):
        self.handled += 1
        super().finish_request(request, client_address)

    def serve(self):
        deadline = time.monotonic() + SERVER_DEADLINE_S
        while self.handled < self.max_requests and time.monotonic() < deadline and not self.stop:
            self.handle_request()


@pytest.fixture
def http_server(served):
    server = _BoundedServer(served[3])
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop = True
        thread.join(timeout=5)
        server.server_close()
    assert not thread.is_alive()
    assert 0 < server.handled <= server.max_requests


def test_rest_client_over_http(served, http_server, monkeypatch, capsys):
    model, _, video, stand_in = served
    client = RestClient(http_server, "tiny", 16, timeout=20)
    result = client.predict_video(video, clips="cover", batch_size=2)
    expected = reference_probabilities(model, video, result.clip_indices)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    with pytest.raises(ServingError, match="(?s)HTTP 400.*expects `clips`"):
        RestClient(http_server, "tiny", 8, timeout=20).predict_video(video, clips="center")
    with pytest.raises(ServingError, match="HTTP 404"):
        RestClient(http_server, "other", 16, timeout=20).predict_video(video, clips="center")
    # The command line over the same server.
    assert "predict" in COMMANDS
    url = f"{http_server}/v1/models/tiny/versions/3"
    assert main(["predict", video, "--model", url, "--frames", "16", "--json", "--no-progress"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert top[0]["class"] == CLASS_NAMES[int(np.argmax(expected))]
    # Without --frames the frame count comes from the served signature's metadata.
    assert main(["predict", video, "--model", url, "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["top"] == top


def test_grpc_client_over_a_local_server(served):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    model, _, video, stand_in = served
    servicer = type("Servicer", (prediction_service_pb2_grpc.PredictionServiceServicer,), {
        "Predict": lambda self, request, context: stand_in.Predict(request),
        "GetModelMetadata": lambda self, request, context: stand_in.GetModelMetadata(request)})()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = GrpcClient.from_url(f"grpc://127.0.0.1:{port}/tiny", clip_len=16, timeout=20
                                             ).predict_video(video, clips=3, batch_size=3)
    finally:
        server.stop(grace=None).wait(5)
    np.testing.assert_allclose(result.probabilities, reference_probabilities(model, video, result.clip_indices),
                               atol=1e-5)
