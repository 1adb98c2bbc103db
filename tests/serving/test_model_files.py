"""The files a model lives in: a .keras file and the class names beside it, and <name>/<version>/ folders."""
import json
import os

import keras
import numpy as np
import pytest

from keras_bert3d.serving import model_files


def test_read_class_names(tmp_path):
    (tmp_path / "names.txt").write_text("Apply Eye Makeup\n\nArchery\r\n")
    (tmp_path / "names.json").write_text(json.dumps(["a", "b"]))
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    assert model_files.read_class_names(str(tmp_path / "names.txt")) == ["Apply Eye Makeup", "Archery"]
    assert model_files.read_class_names(str(tmp_path / "names.json")) == ["a", "b"]
    with pytest.raises(ValueError, match="JSON list of strings"):
        model_files.read_class_names(str(tmp_path / "bad.json"))


def test_version_folders(tmp_path):
    base = tmp_path / "tiny"
    for version in (1, 3, 12):
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "saved_model.pb").write_bytes(b"")
    (base / "20").mkdir()  # a version folder without a SavedModel (being written, or broken)
    (base / ".21.partial-7").mkdir()  # an export's staging folder
    (base / "30").write_text("a file, not a folder")
    assert model_files.version_numbers(str(base)) == [1, 3, 12]  # numbers, not names: 12 after 3
    assert model_files.version_numbers(str(base), saved_models_only=False) == [1, 3, 12, 20]
    assert model_files.version_numbers(str(tmp_path / "none")) == []
    assert model_files.next_version(str(base)) == 21 and model_files.next_version(str(tmp_path / "none")) == 1
    assert model_files.saved_model_dir(str(base)) == os.path.join(str(base), "12")
    assert model_files.saved_model_dir(str(base / "3")) == str(base / "3")
    with pytest.raises(FileNotFoundError, match="nor a folder of versions"):
        model_files.saved_model_dir(str(base / "20"))


def test_load_classifier_and_the_class_names_beside_it(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(inputs), name="toy")
    model.compile(optimizer="adam", loss="mse")
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    loaded, names = model_files.load_classifier(run / "best.keras")
    assert loaded.name == "toy" and names is None and not loaded.compiled  # for inference: no optimizer state
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    (run / "class_names.json").write_text(json.dumps(["walk", "run", "jump"]))  # as a training run writes it
    assert model_files.load_classifier(run / "best.keras").class_names == ["walk", "run", "jump"]
    assert model_files.load_classifier(run / "best.keras", ["a", "b", "c"]).class_names == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="no model file"):
        model_files.load_classifier(run / "last.keras")
    (run / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="expected a .keras model file"):
        model_files.load_classifier(run / "notes.txt")
