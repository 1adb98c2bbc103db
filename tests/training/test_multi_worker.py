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
from keras_bert3d.training.strategies import get_strategy  # noqa: E402

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


def _launch(root, *args):
    """Runs the two workers to completion (killed after BUDGET_S seconds); returns their exit codes."""
    deadline = time.monotonic() + BUDGET_S
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs, logs = [], []
    try:
        for index in range(2):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            logs.append(open(os.path.join(root, f"worker{index}.log"), "ab"))
            procs.append(subprocess.Popen([sys.executable, worker.__file__, "--root", str(root), *args], env=env,
                                          stdout=logs[-1], stderr=subprocess.STDOUT, cwd=REPO))
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 1)))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the workers did not finish within {BUDGET_S} s (logs in {root})")
        return codes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


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
