"""training/distributed.py: `get_strategy` and the custom training loop `custom_fit`.

The multi-worker test starts two CPU worker processes (tests/training/mw_worker_entry.py) on 127.0.0.1 with
their own TF_CONFIG, under a hard time budget; the others run `custom_fit` in this process under the default
strategy (never a MultiWorkerMirroredStrategy: it must be created at program start).
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

import mw_worker_entry as worker  # noqa: E402
from keras_bert3d.training.distributed import custom_fit  # noqa: E402
from keras_bert3d.training.strategies import WorkerLostError, get_strategy, lost_worker_error  # noqa: E402

BUDGET_S = 85  # the two workers' whole run


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start(root, cluster, *args, quiet="2"):
    """The two worker processes (logs in ``root/worker<k>.log``, appended)."""
    procs = []
    for index in range(2):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL=quiet, PYTHONPATH=REPO,
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        with open(os.path.join(root, f"worker{index}.log"), "ab") as log:
            procs.append(subprocess.Popen([sys.executable, worker.__file__, "--root", str(root), *args], env=env,
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
    return procs


def _stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _launch(root, *args, quiet="2"):
    """Runs the two workers to completion (killed after BUDGET_S seconds); returns their exit codes."""
    deadline = time.monotonic() + BUDGET_S
    procs = _start(root, {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}, *args, quiet=quiet)
    try:
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 1)))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the workers did not finish within {BUDGET_S} s (logs in {root})")
        return codes
    finally:
        _stop(procs)


def _log_tail(root):
    return "\n".join((root / f"worker{k}.log").read_text(errors="replace")[-3000:] for k in range(2))


def _weights(run_dir, index):
    with np.load(os.path.join(run_dir, f"weights_worker{index}.npz")) as arrays:
        return [arrays[f"arr_{k}"] for k in range(len(arrays.files))]


def _assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.full
def test_two_workers_identical_weights_and_resume(tmp_path):
    # Run "a": 2 epochs of 6 batches, an update every 2 batches; right after update 4 (mid-epoch 2) the chief
    # copies its checkpoint state to run "b", as a run killed there leaves it. Then the same workers train run
    # "b" with a new model, optimizer and loop: it must resume from update 4 and end where "a" ended.
    codes = _launch(tmp_path, "--runs", "a,b", "--epochs", "2", "--snapshot", "4:b")
    assert codes == [0, 0], _log_tail(tmp_path)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    weights_a = _weights(run_a, 0)
    _assert_same(weights_a, _weights(run_a, 1))  # BatchNorm moving statistics included
    summaries = [json.loads((run_a / f"summary_worker{k}.json").read_text()) for k in range(2)]
    per_replica = worker.GLOBAL_BATCH // 2
    batches_per_epoch = -(-(-(-worker.NUM_TRAIN // 2)) // per_replica)  # the larger shard's batches
    updates_per_epoch = batches_per_epoch // worker.ACCUMULATION
    assert [s["global_step"] for s in summaries] == [2 * updates_per_epoch] * 2
    assert [s["is_chief"] for s in summaries] == [True, False]
    assert len(summaries[0]["history"]) == 2 and summaries[1]["history"] == []
    # Only the chief writes the run's files; the other worker's checkpoint folder is gone.
    assert sorted(p.name for p in run_a.iterdir() if not p.name.endswith((".npz", ".json"))) == [
        "backup", "best.keras", "history.csv", "last.keras", "logs"]
    assert len((run_a / "history.csv").read_text().strip().splitlines()) == 1 + 2
    assert any((run_a / "logs" / "train").iterdir()) and any((run_a / "logs" / "validation").iterdir())

    resumed = [json.loads((run_b / f"summary_worker{k}.json").read_text())["resumed_from"] for k in range(2)]
    expected = {"epoch": 1, "step_in_epoch": (4 - updates_per_epoch) * worker.ACCUMULATION, "global_step": 4}
    assert resumed == [expected, expected]
    assert "resumed from" in (tmp_path / "worker0.log").read_text()
    _assert_same(_weights(run_b, 0), _weights(run_b, 1))
    _assert_same(_weights(run_b, 0), weights_a)
    assert (run_b / "history.csv").read_text() == (run_a / "history.csv").read_text()


@pytest.mark.full
def test_a_lost_worker_is_named_in_one_line_and_both_started_again_resume(tmp_path):
    # `bert3d train` on two workers (the tiny training in place of the library's): worker 1 SIGKILLs itself
    # right after update 4 of 6. Worker 0 must exit non-zero within 60 s with one line naming worker 1 by its
    # TF_CONFIG address and task index, and saying to start all workers again; the same command on both then
    # resumes from the backup and finishes the run.
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs = _start(tmp_path, cluster, "--cli", "--die-at", "4", quiet="3")
    try:
        assert procs[1].wait(timeout=BUDGET_S) == -9, _log_tail(tmp_path)  # SIGKILL
        lost_at = time.monotonic()
        try:
            code = procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker 0 still runs 60 s after worker 1 died:\n{_log_tail(tmp_path)}")
        took = time.monotonic() - lost_at
    finally:
        _stop(procs)
    output = (tmp_path / "worker0.log").read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1, output[-3000:]
    backup = os.path.join(str(tmp_path), "a", "backup")
    assert lines[-1] == (f"bert3d train: error: lost the worker at {cluster['worker'][1]} (TF_CONFIG task index 1): "
                         "training cannot go on without it (UnavailableError). Start all 2 workers again with the "
                         f"same command to resume from the backup in {backup}"), output[-3000:]
    assert "Traceback" not in output and "CollectiveReduceV2" not in output, output[-3000:]
    print(f"worker 0 exited {took:.1f} s after worker 1 was killed")

    codes = _launch(tmp_path, "--cli")  # the same command again, on both
    assert codes == [0, 0], _log_tail(tmp_path)
    summaries = [json.loads((tmp_path / "a" / f"summary_worker{k}.json").read_text()) for k in range(2)]
    resumed = [summary["resumed_from"] for summary in summaries]
    assert resumed[0] == resumed[1] and 1 <= resumed[0]["global_step"] <= 4, resumed
    assert [summary["global_step"] for summary in summaries] == [6, 6]
    assert len((tmp_path / "a" / "history.csv").read_text().strip().splitlines()) == 1 + 2


def test_get_strategy_errors(monkeypatch):
    with pytest.raises(ValueError, match="'multiworker'"):
        get_strategy("multiworker")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        get_strategy("multi_worker")
    for text, message in (("{not json", "not valid JSON"), ('{"cluster": {}}', "'cluster' dict"),
                          ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "'chief'"),
                          ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', r"\[0, 1\)")):
        monkeypatch.setenv("TF_CONFIG", text)
        with pytest.raises(ValueError, match=message):
            get_strategy("multi_worker")
    assert get_strategy("default").num_replicas_in_sync == 1


# What a survivor's collective raised in 2-worker runs (TF 2.21) when worker 1, then worker 0, was SIGKILLed.
HEARTBEATS = ("{{function_node __inference_<lambda>_1648}} Collective ops is aborted by: Error reported from "
              "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):\n"
              "/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task logs for an earlier error.\n"
              "The error could be from a previous operation. Restart your program to reset.\n"
              "\t [[{{node CollectiveReduceV2}}]] [Op:__inference_<lambda>_1648]")
SOCKET_CLOSED = ("{{function_node __inference_<lambda>_2590}} Collective ops is aborted by: Socket closed\n"
                 "Additional GRPC error information from remote target /job:worker/replica:0/task:0 while calling "
                 "/tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  {grpc_message:\"Socket "
                 "closed\", grpc_status:14}\n\t [[{{node CollectiveReduceV2}}]] [Op:__inference_<lambda>_2590]")


def _cluster_strategy(addresses, index):
    import types

    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": addresses}), task_type="worker", task_id=index)
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_a_lost_peer_is_named_from_tensorflows_error(tmp_path):
    import tensorflow as tf

    two = ["10.0.0.1:2222", "10.0.0.2:2222"]
    error = lost_worker_error(tf.errors.UnavailableError(None, None, HEARTBEATS), _cluster_strategy(two, 0),
                              str(tmp_path / "run"))
    assert isinstance(error, WorkerLostError) and error.named and error.peers == (("worker", 1, "10.0.0.2:2222"),)
    backup = tmp_path / "run" / "backup"
    assert str(error) == ("lost the worker at 10.0.0.2:2222 (TF_CONFIG task index 1): training cannot go on without "
                          "it (UnavailableError). Start all 2 workers again with the same command (there is no "
                          f"backup in {backup} yet: training starts over)")
    # The chief lost: its socket closed under a call of worker 1.
    error = lost_worker_error(tf.errors.UnavailableError(None, None, SOCKET_CLOSED), _cluster_strategy(two, 1))
    assert error.peers == (("worker", 0, "10.0.0.1:2222"),) and "\n" not in str(error)
    assert str(error).startswith("lost the worker at 10.0.0.1:2222 (TF_CONFIG task index 0): ")
    assert str(error).endswith("Start all 2 workers again with the same command to resume")
    # Three workers, an error that names no task: every other worker is a candidate, and said to be one.
    three = two + ["10.0.0.3:2222"]
    error = lost_worker_error(tf.errors.CancelledError(None, None, "RecvBuf cancelled"), _cluster_strategy(three, 2))
    assert not error.named and [peer[1] for peer in error.peers] == [0, 1]
    assert str(error).startswith("lost a peer that TensorFlow's error does not name, one of: the worker at "
                                 "10.0.0.1:2222 (TF_CONFIG task index 0), the worker at 10.0.0.2:2222 (TF_CONFIG "
                                 "task index 1): ") and "Start all 3 workers" in str(error)
    # Not a lost peer: a data error, a Python error, no cluster.
    assert lost_worker_error(tf.errors.InvalidArgumentError(None, None, "bad jpeg"), _cluster_strategy(two, 0)) is None
    assert lost_worker_error(ValueError("x"), _cluster_strategy(two, 0)) is None
    assert lost_worker_error(tf.errors.UnavailableError(None, None, HEARTBEATS), tf.distribute.get_strategy()) is None


def test_bert3d_train_says_a_lost_worker_in_one_line(tmp_path, monkeypatch, capsys):
    from keras_bert3d import cli
    from keras_bert3d.training import train as training

    message = "lost the worker at 10.0.0.2:2222 (TF_CONFIG task index 1): ... with the same command to resume"

    def lost(config):
        raise WorkerLostError(message)

    monkeypatch.setattr(training, "train", lost)
    config = tmp_path / "run.yaml"
    config.write_text("model: {preset: rgb_r2plus1d_32f_34_bert10}\ndata: {dataset: ucf101, root: /data}\n")
    assert cli.main(["train", str(config), "--strategy", "multi_worker"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1:] == [f"bert3d train: error: {message}"] and "Traceback" not in captured.err


def _fit(run_dir, initial, **kwargs):
    import keras

    built = []

    def model_fn():
        built.append(worker.tiny_model(seed=False))
        built[-1].set_weights(initial)
        return built[-1]

    options = dict(epochs=2, run_dir=str(run_dir), global_batch_size=2, gradient_accumulation_steps=2,
                   checkpoint_every_steps=1, verbose=1)
    options.update(kwargs)
    train, val = worker.dataset_fn(worker.synthetic(9, 1), True, 2), worker.dataset_fn(worker.synthetic(4, 2), False, 2)
    summary = custom_fit(model_fn, lambda: keras.optimizers.AdamW(1e-2, weight_decay=1e-3), options.pop("loss", None),
                         train, val, **options)
    return summary, built[-1]


def test_default_strategy_best_model_and_plateau(tmp_path, capsys):
    """custom_fit in this process (its exact mid-epoch resume: test_two_workers_identical_weights_and_resume)."""
    import keras

    initial = worker.tiny_model(seed=False).get_weights()
    summary, model = _fit(tmp_path / "a", initial)
    assert summary["resumed_from"] is None and summary["global_step"] == 2 * (5 // 2)
    out = capsys.readouterr().out
    assert "Epoch 1/2 - 5 batches, 2 updates" in out and "val_top1" in out
    best = keras.saving.load_model(tmp_path / "a" / "best.keras")
    assert len(best.get_weights()) == len(model.get_weights())
    assert not [p for p in os.listdir(tmp_path / "a") if "tmp" in p]

    # A constant loss never improves: with patience 1 the learning rate drops after the third epoch.
    class Recorder(keras.callbacks.Callback):  # a user's callback, driven with the run folder's
        def __init__(self):
            super().__init__()
            self.events = []

        def on_epoch_end(self, epoch, logs=None):
            self.events.append((epoch, sorted(logs)))

    recorder = Recorder()
    flat, _ = _fit(tmp_path / "c", initial, epochs=4, plateau_patience=1, plateau_factor=0.5, steps_per_epoch=1,
                   validation_steps=1, gradient_accumulation_steps=None, checkpoint_every_steps=None,
                   loss=lambda y, logits: 0.0 * logits[:, 0] + 1.0, callbacks=[recorder])
    assert [epoch for epoch, _ in recorder.events] == [0, 1, 2, 3] and recorder.model is not None
    assert {"loss", "top1", "val_loss", "val_top1"} <= set(recorder.events[0][1])
    # The run folder is the one model.fit's callbacks keep: history.csv with the learning rate, TensorBoard logs.
    header = (tmp_path / "c" / "history.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "epoch" and {"loss", "val_top1", "learning_rate", "bad_videos"} <= set(header)
    assert sorted(os.listdir(tmp_path / "c" / "logs")) == ["train", "validation"]
    assert flat["global_step"] == 4 and [row["val_loss"] for row in flat["history"]] == [1.0] * 4
    rates = [row["learning_rate"] for row in flat["history"]]
    np.testing.assert_allclose(rates, [1e-2, 1e-2, 1e-2, 5e-3], rtol=1e-6)


def test_custom_fit_argument_errors(tmp_path):
    import keras

    initial = worker.tiny_model(seed=False).get_weights()
    with pytest.raises(ValueError, match="epochs=-1"):
        _fit(tmp_path, initial, epochs=-1)
    with pytest.raises(ValueError, match="one loss per example"):
        _fit(tmp_path / "scalar", initial, loss=lambda y, logits: keras.ops.mean(logits))
    with pytest.raises(ValueError, match="accumulates 4 steps"):
        custom_fit(lambda: worker.tiny_model(seed=False), lambda: keras.optimizers.AdamW(gradient_accumulation_steps=4),
                   None, None, epochs=1, run_dir=str(tmp_path), global_batch_size=2, gradient_accumulation_steps=2)
