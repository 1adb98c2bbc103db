"""keras_bert3d.atomic: files and folders appear complete or not at all, fsynced before the rename."""
import os

import pytest

from keras_bert3d import atomic


def _synced(monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                      real(fd)))
    return calls


def test_text_written_synced_and_renamed(tmp_path, monkeypatch):
    calls = _synced(monkeypatch)
    path = tmp_path / "a.json"
    atomic.atomic_write_text(path, "{}")
    assert path.read_text() == "{}" and os.listdir(tmp_path) == ["a.json"]
    assert any(c.endswith("a.json") and atomic.is_temporary(c) for c in calls)  # the file, before the rename
    assert str(tmp_path) in calls  # the folder, after it


def test_error_leaves_old_content_and_no_temporary(tmp_path):
    path = tmp_path / "a.csv"
    atomic.atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.csv"]


def test_path_keeps_suffix_and_bytes(tmp_path):
    with atomic.atomic_path(tmp_path / "sub" / "m.weights.h5") as tmp:
        assert tmp.endswith("m.weights.h5") and atomic.is_temporary(tmp)
        open(tmp, "wb").write(b"x")
    atomic.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "sub" / "m.weights.h5").read_bytes() == b"x"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_folder_replaces_old_folder_whole(tmp_path):
    target = tmp_path / "preset"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic.atomic_folder(target) as tmp:
        assert not os.path.exists(os.path.join(tmp, "stale.txt"))
        open(os.path.join(tmp, "config.json"), "w").write("{}")
    assert sorted(os.listdir(target)) == ["config.json"] and os.listdir(tmp_path) == ["preset"]
    with pytest.raises(RuntimeError):
        with atomic.atomic_folder(target) as tmp:
            raise RuntimeError("killed")
    assert sorted(os.listdir(target)) == ["config.json"] and os.listdir(tmp_path) == ["preset"]
