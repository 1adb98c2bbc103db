"""keras_bert3d.atomic: files and folders appear complete or not at all, fsynced before the rename."""
import os

import numpy as np
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


# Every writer of issue 22 item 1 goes through this module: each test records the final names it wrote through.

@pytest.fixture
def written(monkeypatch):
    names = []
    real = atomic.temporary_name
    monkeypatch.setattr(atomic, "temporary_name", lambda path: names.append(os.path.basename(path)) or real(path))
    return names


def test_evaluation_report_files(tmp_path, written):
    import numpy as np

    from keras_bert3d.training.evaluation import write_report

    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    write_report(str(tmp_path / "eval"), logits, np.array([0, 1, 1]), ["a", "b"])
    files = ["confusion.png", "logits.npz", "metrics.json", "per_class.csv", "predictions.csv"]
    assert sorted(os.listdir(tmp_path / "eval")) == files and set(files) <= set(written)
    with np.load(tmp_path / "eval" / "logits.npz") as saved:
        assert saved["logits"].shape == (3, 2)


def test_leaderboard_config_and_history(tmp_path, written):
    from keras_bert3d.training.config_files import save_config
    from keras_bert3d.training.tune import write_leaderboard

    write_leaderboard([{"trial": "0", "val_top1": 0.5}], str(tmp_path / "leaderboard.csv"))
    save_config({"name": "r"}, str(tmp_path / "config.yaml"))
    assert (tmp_path / "leaderboard.csv").read_text().splitlines() == ["trial,val_top1", "0,0.5"]
    assert {"leaderboard.csv", "config.yaml"} <= set(written)


def test_flow_split_files(tmp_path, written):
    from keras_bert3d.data.flow import _write_split

    (tmp_path / "v1").mkdir()
    _write_split(str(tmp_path), ["v1", "v2"], [0, 1], "flow_split.txt", lambda folder: 7)
    assert (tmp_path / "flow_split.txt").read_text() == "v1 7 0\n" and written == ["flow_split.txt"]


def test_synthetic_json_and_lists(tmp_path, written):
    import json

    from keras_bert3d.data.synthetic import write_synthetic_dataset

    info = write_synthetic_dataset(str(tmp_path), num_classes=2, videos_per_class=2, num_frames=12, size=(32, 32),
                                   formats=("avi",))
    assert json.loads((tmp_path / "synthetic.json").read_text())["class_names"] == info["class_names"]
    assert {"synthetic.json", "classInd.txt", "trainlist01.txt", "testlist01.txt"} <= set(written)


def test_preset_folder_is_swapped_in_whole(tmp_path, written):
    import keras

    from keras_bert3d.models import preset_io

    class Tiny(keras.Model):  # what save_backbone_preset needs of a backbone: a config and weights
        def __init__(self, units=2, **kwargs):
            super().__init__(**kwargs)
            self.units, self.dense = units, keras.layers.Dense(units)

        def call(self, x):
            return self.dense(x)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    backbone = Tiny()
    backbone(np.zeros((1, 3), "float32"))
    folder = tmp_path / "preset"
    folder.mkdir()
    (folder / "stale.weights.h5").write_bytes(b"from an older save")
    preset_io.save_backbone_preset(backbone, str(folder))
    assert sorted(os.listdir(folder)) == ["config.json", "metadata.json", "model.weights.h5"]
    assert "preset" in written and os.listdir(tmp_path) == ["preset"]


def test_onnx_file_appears_only_once_checked(tmp_path, monkeypatch, written):
    """A refused ONNX file never replaces the file there. tf2onnx and onnx are stubbed: tests/serving runs them."""
    import sys
    import types

    from keras_bert3d.serving import export_formats

    problems = []
    onnx = types.SimpleNamespace(
        load=lambda path: types.SimpleNamespace(graph=types.SimpleNamespace(node=[])),
        defs=types.SimpleNamespace(has=lambda *a: True),
        checker=types.SimpleNamespace(check_model=lambda path, full_check: problems and _raise(problems[0])))
    monkeypatch.setitem(sys.modules, "onnx", onnx)
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: object() if name == "tf2onnx" else real_find_spec(name, *args))

    class Model:
        name, input = "toy", types.SimpleNamespace(shape=(None, 2, 4, 4, 3))

        def export(self, path, **kwargs):
            open(path, "wb").write(b"onnx bytes")

    path = str(tmp_path / "m.onnx")
    assert export_formats.export_onnx(Model(), path) == path and open(path, "rb").read() == b"onnx bytes"
    problems.append(ValueError("bad graph"))
    with open(path, "wb") as f:
        f.write(b"the good one")
    with pytest.raises(ValueError, match="toy: tf2onnx wrote an invalid model: bad graph"):
        export_formats.export_onnx(Model(), path)
    assert open(path, "rb").read() == b"the good one" and os.listdir(tmp_path) == ["m.onnx"]
    assert written.count("m.onnx") == 2


def _raise(error):
    raise error


def test_litert_file(tmp_path, written):
    import keras

    from keras_bert3d.serving import export_formats
    from keras_bert3d.serving.export import export_saved_model

    inputs = keras.Input((2, 8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling3D()(inputs)), name="toy")
    prep = {"modality": "rgb", "num_frames": 2, "frame_size": [8, 10], "crop_size": 8, "scale": 1.0,
            "mean": [0.0] * 3, "std": [1.0] * 3}
    saved = export_saved_model(model, str(tmp_path / "toy"), preprocessing=prep, warmup=False)
    path = export_formats.export_litert(saved, str(tmp_path / "toy.tflite"))
    assert os.path.getsize(path) > 0 and "toy.tflite" in written
    assert not [name for name in os.listdir(tmp_path) if atomic.is_temporary(name)]
