"""Hostile files and servers are refused (issue 22 item 4): bounded answers and class indices from a served
model, legacy .h5 model files only when asked for as unsafe, the quoted `docker run` line, and the isolated,
time-limited TensorFlow subprocess."""
import http.server
import json
import shlex
import subprocess
import threading
import time

import keras
import numpy as np
import pytest

from keras_bert3d.serving import grpc_client, model_files, video_client
from keras_bert3d.serving.open_client import open_client
from keras_bert3d.serving.rest_client import RestClient
from keras_bert3d.serving.video_client import ServingError

CLIPS = np.zeros((1, 4, 8, 8, 3), np.uint8)


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """``/big``: streams 1 GB of zeros (with or without Content-Length); ``/index``: a class index of 10**9."""

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - the http.server method name
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = self.path.split("/")[3].split(":")[0]
        if mode == "index":
            body = json.dumps({"predictions": [{"logits": [0.1, 0.9], "probabilities": [0.4, 0.6],
                                                "top_k_indices": [10**9, 0], "top_k_scores": [0.6, 0.4],
                                                "top_k_classes": ["evil", "a"]}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        if mode == "big":
            self.send_header("Content-Length", str(10**9))
        self.end_headers()
        chunk = b"0" * 2**20
        try:
            for _ in range(1000):  # streamed, never allocated: 1 GB in 1 MB writes until the client hangs up
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def hostile_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["big", "bigchunks"])
def test_rest_answer_of_1_gb_is_refused_quickly(hostile_server, mode):
    client = RestClient(hostile_server, mode, clip_len=4, timeout=20)
    start = time.monotonic()
    with pytest.raises(ServingError, match="the answer is over .* bytes"):
        client.predict_clips(CLIPS)
    assert time.monotonic() - start < 10


def test_rest_class_index_beyond_the_scores_is_refused(hostile_server):
    client = RestClient(hostile_server, "index", clip_len=4, timeout=20)
    with pytest.raises(ServingError, match="class index 1000000000, outside the 2 classes"):
        client.score_clips(CLIPS)
    assert len(client.class_names) <= 2


def test_response_limit_grows_with_the_batch_and_the_classes():
    one = video_client.response_limit(1)
    assert video_client.response_limit(4) > 3 * (one - video_client.RESPONSE_MARGIN_BYTES)
    assert video_client.response_limit(1, 10 * video_client.MAX_CLASSES) > 9 * one - 9 * 2**20
    assert one < 2**23  # a 1 GB answer is far over it


def test_grpc_channel_limits_are_what_the_model_needs(monkeypatch):
    opened = []
    import grpc

    real_channel = grpc.insecure_channel
    monkeypatch.setattr(grpc, "insecure_channel",
                        lambda target, options: opened.append(dict(options)) or real_channel(target, options=options))
    client = grpc_client.GrpcClient("127.0.0.1:1", "m", clip_len=4, input_name="clips")
    client.stub
    assert opened[-1] == {"grpc.max_send_message_length": grpc_client.REQUEST_MARGIN_BYTES,
                          "grpc.max_receive_message_length": video_client.METADATA_BYTES}
    client._stub_for(10, 10)  # within the open channel's limits: no new channel
    assert len(opened) == 1
    client._stub_for(grpc_client.REQUEST_MARGIN_BYTES + 5, video_client.response_limit(16))
    assert opened[-1]["grpc.max_receive_message_length"] == video_client.response_limit(16)
    assert all(value > 0 for options in opened for value in options.values())  # never -1 (unlimited)


def test_grpc_answer_over_the_limit_is_refused():
    from tensorflow_serving.apis import predict_pb2

    class BigStub:
        def Predict(self, request, timeout=None):  # noqa: N802 - the gRPC method name
            response = predict_pb2.PredictResponse()
            response.outputs["logits"].string_val.append(b"x" * (video_client.response_limit(1) + 1))
            return response

    client = grpc_client.GrpcClient("h:1", "m", clip_len=4, input_name="clips", stub=BigStub())
    with pytest.raises(ServingError, match="the answer is over"):
        client.predict_clips(CLIPS)


def _toy_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(inputs), name="toy")


def test_legacy_h5_model_refused_unless_asked_for(tmp_path):
    path = tmp_path / "model.h5"
    _toy_model().save(path)  # Keras' legacy HDF5 full-model format
    for load in (lambda **kw: model_files.load_classifier(path, None, (".keras", ".h5"), **kw),
                 lambda **kw: open_client(str(path), **kw)):
        with pytest.raises(ValueError, match="legacy .h5 model file can run code.*--unsafe-legacy-h5"):
            load()
    assert model_files.load_classifier(path, None, (".keras", ".h5"), unsafe_legacy_h5=True).model.name == "toy"
    with pytest.raises(ValueError, match="toy carries no preprocessing record"):  # loaded: not a bert3d model
        open_client(str(path), unsafe_legacy_h5=True)


def test_predict_refuses_a_legacy_h5_model_with_a_clear_message(tmp_path, capsys):
    from keras_bert3d.cli import main

    path = tmp_path / "model.h5"
    _toy_model().save(path)
    assert main(["predict", str(tmp_path / "video.mp4"), "--model", str(path)]) == 2
    assert "legacy .h5 model file can run code" in capsys.readouterr().err


def test_docker_line_is_shell_quoted():
    from keras_bert3d.cli.export import docker_command

    line = docker_command("/tmp/my models/$(rm -rf ~)", model_name="a b")
    words = shlex.split(line)
    assert words[words.index("-v") + 1] == "/tmp/my models/$(rm -rf ~):/models/a b"
    assert "MODEL_NAME=a b" in words and words[:3] == ["docker", "run", "--rm"]
    config = shlex.split(docker_command("/srv/x'y", config_file="models.config"))
    assert config[config.index("-v") + 1] == "/srv/x'y:/models"
    assert config[-1] == "--model_config_file=/models/models.config"
    assert docker_command("/srv/plain", model_name="m") == ("docker run --rm -p 8501:8501 -v /srv/plain:/models/m "
                                                            "-e MODEL_NAME=m tensorflow/serving")


def test_call_on_tensorflow_is_isolated_and_time_limited(monkeypatch):
    from keras_bert3d import backend

    calls = []
    real_run = subprocess.run

    def recording_run(command, **kwargs):
        calls.append((command, kwargs))
        return real_run(command, **kwargs)

    monkeypatch.setattr(backend, "name", lambda: "jax")  # as if the model lived on another backend
    monkeypatch.setattr(backend.subprocess, "run", recording_run)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="did not finish within 0.5 s"):
        backend.call_on_tensorflow(_toy_model(), "time:sleep", timeout=0.5)
    assert time.monotonic() - start < 30
    command, kwargs = calls[0]
    assert command[1:3] == ["-I", "-c"] and kwargs["timeout"] == 0.5


def test_keras_requirement_excludes_releases_with_safe_mode_bypasses():
    import os
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    setup_py = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "setup.py")
    with open(setup_py, encoding="utf-8") as f:
        line = re.search(r'"(keras[<>=!,.\d ]+)"', f.read()).group(1)
    requirement = Requirement(line)
    assert not requirement.specifier.contains("3.13.2") and requirement.specifier.contains("3.14.0")
    assert requirement.specifier.contains(Version(keras.__version__))  # the installed Keras satisfies it
