"""Runs never touch each other (issue 22 item 1): checked run names, backups cleaned up without glob patterns,
the run folder's lock, the models of a run that starts over kept, checkpoint numbers that never repeat,
fsynced backups with a corrupt ``state.json`` named, and resumes refused when the `train` numbers change."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_bert3d import atomic
from keras_bert3d.training import run_folder
from keras_bert3d.training.backup import TrainingBackup
from keras_bert3d.training.config import RESUMABLE_TRAIN_KEYS, validate_config
from keras_bert3d.training.config_files import save_config
from keras_bert3d.training.run_lock import RunFolderLocked, RunLock

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _config(**train):
    return validate_config({"name": "r1", "data": {"dataset": "folders", "root": "videos"},
                            "model": {"preset": "rgb_r2plus1d_32f_34_bert10"}, "train": train})


def _backup(backup_dir):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup = TrainingBackup(str(backup_dir), save_freq="epoch")
    backup.set_model(model)
    return backup


@pytest.mark.parametrize("name", ["r[1]", "run*", "a/b", "..", "", "-r", "r 1", "r?", "é"])
def test_run_names_are_checked(name):
    with pytest.raises(ValueError, match=r"`name` must be a name of letters, digits"):
        validate_config(dict(_config(), name=name))


def test_sibling_backup_survives_a_run_named_r_bracket_1(tmp_path):
    """``name=r[1]`` is refused now; and the clean-up no longer globs, so even a folder with that name (made by
    hand, or by an older version) never touches ``runs/r1``: the glob ``runs/r[1]/backup/ckpt-*`` matched it."""
    with pytest.raises(ValueError, match="`name`"):
        validate_config(dict(_config(), name="r[1]"))
    sibling = tmp_path / "r1" / "backup"
    sibling.mkdir(parents=True)
    for name in run_folder.backup_files(999):
        (sibling / name).write_bytes(b"the sibling's backup")
    backup = _backup(tmp_path / "r[1]" / "backup")
    for epoch in range(3):
        backup.save(epoch + 1, 0)
    assert sorted(os.listdir(sibling)) == sorted(run_folder.backup_files(999))
    # its own clean-up still works: the latest backup and the one before, nothing else
    assert sorted(os.listdir(tmp_path / "r[1]" / "backup")) == sorted(
        [*run_folder.backup_files(2), *run_folder.backup_files(3), "state.json", "state.previous.json"])


def test_backup_files_are_fsynced_before_the_state_is_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                      real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("replace", os.fspath(b))),
                                                          real_replace(a, b))[1])
    _backup(tmp_path / "backup").save(1, 0)
    state = str(tmp_path / "backup" / "state.json")
    renamed = events.index(("replace", state))
    synced = [path for kind, path in events[:renamed] if kind == "fsync"]
    for name in (*run_folder.backup_files(1), "state.json"):  # each file's temporary name, before the state's rename
        assert any(atomic.is_temporary(path) and path.endswith(name) for path in synced), name
    assert ("fsync", str(tmp_path / "backup")) in events[renamed:]  # and the folder after it


def test_corrupt_state_json_names_the_file_and_offers_the_previous_backup(tmp_path):
    backup = _backup(tmp_path / "backup")
    backup.save(1, 0)
    state = tmp_path / "backup" / "state.json"
    state.write_text("")  # what a power loss can leave
    with pytest.raises(ValueError, match="there is no previous backup"):
        TrainingBackup.read(str(tmp_path / "backup"))
    backup.save(2, 0)
    backup.save(3, 0)
    state.write_text('{"epoch": 3, "ste')
    with pytest.raises(ValueError) as raised:
        TrainingBackup(str(tmp_path / "backup"))
    message = str(raised.value)
    assert str(state) in message and "corrupt" in message
    assert str(tmp_path / "backup" / "state.previous.json") in message
    previous = json.loads((tmp_path / "backup" / "state.previous.json").read_text())
    assert previous["epoch"] == 2 and os.path.isfile(tmp_path / "backup" / previous["weights"])
    (tmp_path / "backup" / "state.previous.json").replace(state)  # what the message offers: resume from it
    assert TrainingBackup(str(tmp_path / "backup")).resume_point == (2, 0)


def test_the_lock_keeps_a_second_process_out(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunFolderLocked) as raised:
            with RunLock(tmp_path / "run"):
                pass
        message = str(raised.value)
        assert str(tmp_path / "run" / "train.lock") in message and f"pid {os.getpid()}" in message
        assert f"on host {os.uname().nodename}" in message
    with RunLock(tmp_path / "run") as lock:  # released at the end of the block
        assert lock.holder()["pid"] == os.getpid()


@pytest.mark.full  # a subprocess (about 10 s)
def test_the_lock_is_released_when_its_process_dies(tmp_path):
    """Another process holds the lock (this one is refused), then is killed: the lock is free again."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from keras_bert3d.training.run_lock import RunLock
        lock = RunLock({str(tmp_path / "run")!r}).__enter__()
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderLocked, match=f"pid {holder.pid} "):
            RunLock(tmp_path / "run").__enter__()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path / "run"):
        pass


def test_starting_over_keeps_the_previous_models(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "best.keras").write_bytes(b"the old best")
    (run / "last.keras").write_bytes(b"the old last")
    os.utime(run / "best.keras", (1_700_000_000, 1_700_000_000))  # 2023-11-14 22:13:20 UTC
    kept = run_folder.write_run_files(str(run), _config(), ["a", "b"])
    assert (run / "best.20231114T221320Z.keras").read_bytes() == b"the old best"
    assert sorted(os.path.basename(p) for p in kept) == ["best.20231114T221320Z.keras",
                                                         f"last.{os.path.basename(kept[1]).split('.')[1]}.keras"]
    assert not (run / "best.keras").exists() and not (run / "last.keras").exists()
    (run / "best.keras").write_bytes(b"the new best")
    os.utime(run / "best.keras", (1_700_000_000, 1_700_000_000))  # same time: a new name all the same
    assert os.path.basename(run_folder.keep_previous_models(str(run))[0]) == "best.20231114T221320Z-2.keras"
    # a run that resumes (a backup is there) keeps its best.keras where it is
    (run / "best.keras").write_bytes(b"resumed")
    (run / "backup").mkdir()
    (run / "backup" / "state.json").write_text("{}")
    assert run_folder.write_run_files(str(run), _config(), ["a", "b"]) == []
    assert (run / "best.keras").read_bytes() == b"resumed"


@pytest.mark.parametrize("backup_file", ["state.json", "checkpoint"])  # model.fit's backup, the custom loop's
def test_resume_refuses_a_train_section_that_changes_the_numbers(tmp_path, backup_file):
    run = tmp_path / "r1"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / backup_file).write_text("{}")
    save_config(_config(seed=0, steps_per_epoch=10), str(run / "config.yaml"))
    with pytest.raises(ValueError) as raised:
        run_folder.check_resume(str(run), _config(seed=1, steps_per_epoch=20, epochs=300))
    message = str(raised.value)
    assert "train.seed (0 -> 1)" in message and "train.steps_per_epoch (10 -> 20)" in message
    assert "epochs" not in message and str(run / "backup") in message
    for key, value in (("optimizer", "sgd"), ("learning_rate", 0.5), ("gradient_accumulation_steps", 2),
                       ("validation_steps", 3), ("mixed_precision", "mixed_bfloat16")):
        with pytest.raises(ValueError, match=rf"train\.{key} "):
            run_folder.check_resume(str(run), _config(seed=0, steps_per_epoch=10, **{key: value}))
    # harmless keys: a longer run, other backups, other messages, other execution choices
    harmless = {"epochs": 500, "backup_freq": "epoch", "verbose": 2, "jit_compile": False, "deterministic": True}
    assert set(harmless) == set(RESUMABLE_TRAIN_KEYS)
    run_folder.check_resume(str(run), _config(seed=0, steps_per_epoch=10, **harmless))
    with pytest.raises(ValueError, match=r"data\.batch_size \(8 -> 4\)"):
        config = _config(seed=0, steps_per_epoch=10)
        config["data"]["batch_size"] = 4
        run_folder.check_resume(str(run), config)


def test_custom_loop_checkpoint_numbers_never_repeat(tmp_path, monkeypatch):
    """The epoch's last update is saved, then the epoch end: two saves, two numbers (not ``ckpt-<update>``
    twice); every checkpoint file is fsynced."""
    import tensorflow as tf

    sys.path.insert(0, HERE)
    import mw_worker_entry as worker
    from keras_bert3d.training import distributed

    saved, synced = [], []
    real_save, real_fsync = tf.train.CheckpointManager.save, distributed.fsync_file
    monkeypatch.setattr(tf.train.CheckpointManager, "save",
                        lambda self, *a, **k: saved.append(real_save(self, *a, **k)) or saved[-1])
    monkeypatch.setattr(distributed, "fsync_file", lambda path: (synced.append(path), real_fsync(path)))

    def fit(epochs):
        return distributed.custom_fit(
            lambda: worker.tiny_model(seed=False), lambda: keras.optimizers.SGD(1e-2), None,
            worker.dataset_fn(worker.synthetic(4, 1), False, 2), None, epochs=epochs, run_dir=str(tmp_path),
            global_batch_size=2, steps_per_epoch=2, checkpoint_every_steps=1, verbose=0)

    fit(1)  # updates 1 and 2, then the epoch end: 3 saves
    fit(2)  # resumed: updates 3 and 4, then the epoch end
    names = [os.path.basename(path) for path in saved]
    assert len(names) == 6 and len(set(names)) == 6, names
    assert tf.train.latest_checkpoint(str(tmp_path / "backup")).endswith(names[-1])
    assert any(path.endswith(".index") for path in synced) and any(path.endswith("checkpoint") for path in synced)
    reader = tf.train.load_checkpoint(str(tmp_path / "backup"))
    assert int(reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE")) == 4
    assert np.isfinite(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))


def test_bert3d_train_into_a_locked_run_folder_says_so(tmp_path, capsys):
    import argparse

    from keras_bert3d.cli import train as cli

    config = dict(_config(), output_dir=str(tmp_path / "runs"))
    save_config(config, str(tmp_path / "config.yaml"))
    args = argparse.Namespace(config=str(tmp_path / "config.yaml"), overrides=[], strategy=None, print_config=False)
    with RunLock(tmp_path / "runs" / "r1"):
        assert cli.run(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("bert3d train: error: the run folder") and "train.lock" in error
    assert f"pid {os.getpid()}" in error


def test_a_torn_newest_custom_loop_backup_falls_back_to_the_one_before(tmp_path, caplog):
    """TensorFlow renames its ``checkpoint`` index before the files can be fsynced: a torn newest checkpoint
    (a power loss) is skipped with a warning and the previous one restored; none readable is a clear error."""
    import tensorflow as tf

    from keras_bert3d.training.distributed import restore_newest_readable

    value = tf.Variable([1.0, 2.0, 3.0])
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), str(tmp_path), max_to_keep=2)
    first = manager.save()
    value.assign([4.0, 5.0, 6.0])
    newest = manager.save()
    target = tf.Variable([0.0, 0.0, 0.0])
    assert restore_newest_readable(tf.train.Checkpoint(value=target), str(tmp_path)) == newest
    assert target.numpy().tolist() == [4.0, 5.0, 6.0]
    for name in os.listdir(tmp_path):  # tear the newest: its index is cut short
        if name.startswith(os.path.basename(newest) + ".index"):
            with open(tmp_path / name, "r+b") as f:
                f.truncate(7)
    with caplog.at_level("WARNING"):
        assert restore_newest_readable(tf.train.Checkpoint(value=target), str(tmp_path)) == first
    assert target.numpy().tolist() == [1.0, 2.0, 3.0] and os.path.basename(newest) in caplog.text
    for name in os.listdir(tmp_path):
        if name.startswith(os.path.basename(first) + ".index"):
            with open(tmp_path / name, "r+b") as f:
                f.truncate(7)
    with pytest.raises(ValueError, match="no backup in .* can be read"):
        restore_newest_readable(tf.train.Checkpoint(value=target), str(tmp_path))
    assert restore_newest_readable(tf.train.Checkpoint(value=target), str(tmp_path / "empty")) is None
