"""`bert3d train` with ``data.service``: a tiny run whose training batches come through a `bert3d data-service`
dispatcher and worker on loopback (subprocesses), validation read locally (full tier)."""
import signal
import subprocess

import pytest

from data.test_service import _bert3d as _server, _listening as _address
from train_runs import command, config, history, run, write_dataset


@pytest.mark.full
def test_a_run_trains_through_the_data_service(tmp_path):
    from keras_bert3d.data.indexes import ucf101_index
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    root = write_dataset(tmp_path / "data")
    for subset in ("train", "test"):
        write_tfrecords(ucf101_index(str(root), split=1, subset=subset), tmp_path / subset, num_shards=2, workers=1,
                        progress=False)
    children = []
    try:
        children.append(_server(tmp_path / "dispatcher.log", "dispatcher", "--port", "0"))
        address = _address(tmp_path / "dispatcher.log", children[0])
        children.append(_server(tmp_path / "worker.log", "worker", "--dispatcher", address, "--heartbeat", "0.5"))
        _address(tmp_path / "worker.log", children[1])
        data = {"source": "tfrecord", "tfrecord": str(tmp_path / "train"), "val_tfrecord": str(tmp_path / "test"),
                "service": address}
        path = config(tmp_path, root, data=data, train={"epochs": 1})
        output = run(command(path), tmp_path / "train.log")
        rows = history(tmp_path / "runs" / "run")
        assert len(rows) == 1 and "val_loss" in rows[0], output[-2000:]
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(30)
