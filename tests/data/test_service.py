"""The tf.data service (keras_bert3d.data.service): an in-process dispatcher and two workers on loopback serve the
same clips as the local pipeline (train and val, any order); bad addresses and non-TFRecord input are refused; a
graph holding Python code cannot travel. Full tier: the `bert3d data-service` processes, one worker killed
mid-epoch and brought back at its address, the epoch ends."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import service as service_lib
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import write_video
from keras_bert3d.training.pipelines import Pipelines

LENGTHS = (20, 40, 9, 33, 12, 27, 16, 50)
PREP = {"modality": "rgb", "num_frames": 8, "frame_size": [24, 32], "crop_size": 16,
        "scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The tests that talk gRPC (tf.data service clients and servers) run in an interpreter of their own
# (`test_served_tests_in_their_own_interpreter`): gRPC's threads in the test process could deadlock a child that a
# later test forks (the writers' worker pools, keras_bert3d.data.parallel).
IN_CHILD = os.environ.get("BERT3D_SERVICE_TESTS") == "child"
served = pytest.mark.skipif(not IN_CHILD, reason="runs in test_served_tests_in_their_own_interpreter")


@pytest.mark.parametrize("tier", ["not full", pytest.param("full", marks=pytest.mark.full)])
def test_served_tests_in_their_own_interpreter(tier):
    if IN_CHILD:
        pytest.skip("the child itself")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    env.update(BERT3D_SERVICE_TESTS="child", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m", tier,
                           os.path.abspath(__file__)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and " passed" in done.stdout, (done.stdout + done.stderr)[-4000:]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    records = []
    for k, n in enumerate(LENGTHS):
        path = str(root / f"video{k}.mp4")
        write_video(path, rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8))
        records.append(VideoRecord(path, k % 3, f"c{k % 3}"))
    index = VideoIndex(records, ["c0", "c1", "c2"])
    write_tfrecords(index, root / "shards", num_shards=8, workers=1, progress=False, frame_size=[24, 32])
    return index, str(root / "shards")


@pytest.fixture(scope="module")
def dispatcher():
    assert IN_CHILD, "a gRPC server in the test process"
    server = service_lib.start_dispatcher()
    workers = [service_lib.start_worker(server.target, heartbeat=0.25) for _ in range(2)]  # a stop waits for a beat
    yield server.target
    for worker in workers:
        worker.stop()
    server.stop()


def clips_of(dataset):
    """The multiset of an epoch's ``(label, clip bytes)``, sorted (a device-path clip: its uint8 box and window)."""
    out = []
    for clips, labels in dataset.as_numpy_iterator():
        if isinstance(clips, dict):
            clips = [frames.tobytes() + window.tobytes() for frames, window in zip(clips["frames"], clips["windows"])]
        out += [(int(label), bytes(clip)) for clip, label in zip(clips, labels)]
    return sorted(out)


@served
@pytest.mark.parametrize("mode,augment", [("train", "host"), ("val", "host"), ("train", "device")])
def test_an_epoch_through_the_service_gives_the_local_clips(shards, dispatcher, mode, augment):
    _, folder = shards
    kwargs = dict(batch_size=3, seed=11, reshuffle_each_iteration=False, augment=augment)
    local = clips_of(make_dataset(folder, PREP, mode, **kwargs).dataset)
    served = clips_of(make_dataset(folder, PREP, mode, service=dispatcher, **kwargs).dataset)
    assert len(local) == len(LENGTHS) and sorted(label for label, _ in local) == sorted(k % 3 for k in
                                                                                        range(len(LENGTHS)))
    assert served == local
    if mode == "train" and augment == "host":  # another seed draws other clips, through the service too
        other = clips_of(make_dataset(folder, PREP, mode, service=dispatcher, **dict(kwargs, seed=12)).dataset)
        assert other != served and len(other) == len(served)


@served
def test_training_batches_come_through_the_service(shards, dispatcher):
    index, folder = shards
    data = {"source": "tfrecord", "tfrecord": folder, "val_tfrecord": folder, "batch_size": 4, "strict": False,
            "mixup": 0.0, "cutmix": 0.0, "service": dispatcher}
    pipes = Pipelines(data, PREP, index, index, 3, seed=5, steps_per_epoch=2)
    served = clips_of(pipes.train_epoch(0))
    local = clips_of(Pipelines(dict(data, service=None), PREP, index, index, 3, seed=5, steps_per_epoch=2)
                     .train_epoch(0))
    assert len(served) == 8 and served == local
    assert len(clips_of(pipes.validation())) == len(LENGTHS)  # validation reads locally


def test_service_needs_tfrecord_input_and_a_grpc_address(shards):
    index, folder = shards
    with pytest.raises(ValueError, match="the service needs TFRecord input: `bert3d to-tfrecord`"):
        make_dataset(index, PREP, "train", service="grpc://localhost:5050")
    for bad in ("localhost:5050", "grpc://localhost", "http://localhost:5050", "grpc://localhost:0", 5050):
        with pytest.raises(ValueError, match=r"`service` must be a tf\.data service address grpc://HOST:PORT"):
            make_dataset(folder, PREP, "train", service=bad)
    with pytest.raises(ValueError, match="mode='test'"):
        make_dataset(folder, PREP, "test", service="grpc://localhost:5050")
    with pytest.raises(ValueError, match=r"`dispatcher` must be .*received dispatcher='localhost:1'"):
        service_lib.start_worker("localhost:1")


@served
def test_a_graph_holding_python_cannot_travel(dispatcher):
    python = tf.data.Dataset.range(4).map(lambda x: tf.numpy_function(lambda v: v * 2, [x], tf.int64))
    with pytest.raises(ValueError, match="holds Python code"):
        service_lib.distribute(python, dispatcher)
    assert sorted(service_lib.distribute(tf.data.Dataset.range(6), dispatcher).as_numpy_iterator()) == list(range(6))


def _bert3d(log, *args):
    """``bert3d data-service ARGS`` as a child process, its output in the file ``log`` (a pipe nobody reads could
    fill up and stall it)."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "keras_bert3d.cli", "data-service", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)


def _listening(log, process, timeout=120):
    """The ``grpc://HOST:PORT`` a `bert3d data-service` process prints once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in open(log).read().splitlines():
            if "listening on " in line:
                return line.split("listening on ")[1].split()[0]
        time.sleep(0.2)
    raise AssertionError(f"no address from {process.args}: exit {process.poll()}: {open(log).read()[-2000:]}")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@served
@pytest.mark.full
def test_an_epoch_survives_a_killed_worker(shards, tmp_path):
    """TF's trainer waits for a dead worker's task until a worker is back at its address (a supervisor restarts
    it): the epoch then ends, without the shards the dead worker had in flight, and nothing is read twice."""
    _, folder = shards
    logs = [tmp_path / name for name in ("dispatcher.log", "worker0.log", "worker1.log")]
    children, restart = [], None
    try:
        children.append(_bert3d(logs[0], "dispatcher", "--port", "0", "--worker-timeout", "2"))
        address = _listening(logs[0], children[0])
        ports = [_free_port(), _free_port()]
        worker = ["worker", "--dispatcher", address, "--heartbeat", "0.25", "--port"]
        for log, port in zip(logs[1:], ports):
            children.append(_bert3d(log, *worker, str(port)))
            _listening(log, children[-1])
        dataset = make_dataset(folder, PREP, "train", batch_size=1, seed=3, reshuffle_each_iteration=False,
                               service=address).dataset
        start, seen = time.monotonic(), []
        for clips, labels in dataset:
            seen.append(clips.numpy().tobytes())
            if len(seen) == 1:
                children[1].send_signal(signal.SIGKILL)  # one worker dies with its shards in flight
                restart = threading.Timer(3.0, lambda: children.append(_bert3d(logs[1], *worker, str(ports[0]))))
                restart.start()  # its supervisor brings it back at its address
        assert time.monotonic() - start < 180  # the epoch ended
        assert len(LENGTHS) // 2 <= len(seen) <= len(LENGTHS)  # at least the live worker's share came
        assert len(set(seen)) == len(seen)  # at most once: nothing read twice
        assert children[1].wait(10) == -signal.SIGKILL
        children[2].send_signal(signal.SIGTERM)  # a worker stopped as Ctrl-C / a scheduler stops it: exits cleanly
        assert children[2].wait(60) == 0 and "worker stopped" in logs[2].read_text()
    finally:
        if restart is not None:
            restart.join()
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait(30)


def test_cli_checks_the_role_flags(capsys):
    from keras_bert3d.cli import main

    assert main(["data-service", "worker", "--port", "0"]) == 2
    assert "a worker needs --dispatcher grpc://HOST:PORT" in capsys.readouterr().err
    assert main(["data-service", "worker", "--dispatcher", "grpc://a:1", "--work-dir", "/tmp/x"]) == 2
    assert "--work-dir do(es) not apply to the worker" in capsys.readouterr().err
    assert main(["data-service", "dispatcher", "--port", "70000"]) == 2
    assert "`port` must be an int in 0..65535" in capsys.readouterr().err
    assert main(["data-service", "worker", "--dispatcher", "a:1"]) == 2
    assert "`dispatcher` must be a tf.data service address" in capsys.readouterr().err


@served
def test_a_dispatcher_with_a_work_dir_journals_its_state(tmp_path):
    server = service_lib.start_dispatcher(work_dir=str(tmp_path / "journal"), worker_timeout=2)
    try:
        assert service_lib.check_address("target", server.target) == server.target
        assert os.listdir(tmp_path / "journal")  # fault-tolerant mode: the journal a restarted dispatcher reads
    finally:
        server.stop()
