"""TF Serving models.config: several models and versions, labels, scanning saved_models/, the command."""
import pytest

from keras_bert3d.serving import models_config as mc


def _fake_exports(root, layout):
    """``layout``: {name: [versions]} -> root/<name>/<version>/saved_model.pb (empty files)."""
    for name, versions in layout.items():
        for version in versions:
            folder = root / name / str(version)
            folder.mkdir(parents=True)
            (folder / "saved_model.pb").write_bytes(b"")
    return root


def test_config_for_several_models_and_policies(tmp_path):
    models = {"rgb_r2plus1d_32f_34_bert10": [2, 1], "rgb_I3D64f_bert2": "all", "demo": None}
    path = mc.write_models_config(str(tmp_path / "models.config"), models,
                                  labels={"rgb_r2plus1d_32f_34_bert10": {"stable": 1, "canary": 2}})
    config = mc.read_models_config(path)
    entries = {c.name: c for c in config.model_config_list.config}
    assert list(entries) == list(models)
    r2 = entries["rgb_r2plus1d_32f_34_bert10"]
    assert r2.base_path == "/models/rgb_r2plus1d_32f_34_bert10" and r2.model_platform == "tensorflow"
    assert list(r2.model_version_policy.specific.versions) == [1, 2]
    assert dict(r2.version_labels) == {"stable": 1, "canary": 2}
    assert entries["rgb_I3D64f_bert2"].model_version_policy.WhichOneof("policy_choice") == "all"
    assert entries["demo"].model_version_policy.WhichOneof("policy_choice") is None  # TF Serving: latest
    text = open(path).read()
    assert 'base_path: "/models/demo"' in text and "model_config_list" in text


def test_container_root_and_errors():
    text = mc.models_config_text({"m": [1]}, container_root="/srv/models/")
    assert 'base_path: "/srv/models/m"' in text
    for models, labels, pattern in [({}, None, "at least one model"),
                                    ({"bad name": None}, None, "model names are"),
                                    ({"m": [0]}, None, "positive ints"),
                                    ({"m": [1]}, {"m": {"stable": 3}}, "label 'stable' names version 3"),
                                    ({"m": [1]}, {"other": {"stable": 1}}, "not served")]:
        with pytest.raises(ValueError, match=pattern):
            mc.build_models_config(models, labels=labels)


def test_scan_exports_finds_versions_with_a_saved_model(tmp_path):
    root = _fake_exports(tmp_path / "saved_models", {"a": [1, 3, 2], "b": [1]})
    (root / "a" / "4").mkdir()                      # no saved_model.pb: not a version
    (root / "a" / ".5.partial-1").mkdir()           # a staging folder: ignored
    (root / "README.md").write_text("not a model")
    (root / "empty").mkdir()
    assert mc.scan_exports(str(root)) == {"a": [1, 2, 3], "b": [1]}
    assert mc.config_for_exports(str(root)) == {"a": None, "b": None}
    assert mc.config_for_exports(str(root), all_versions=True) == {"a": [1, 2, 3], "b": [1]}
    with pytest.raises(FileNotFoundError):
        mc.scan_exports(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no SavedModel exports"):
        mc.config_for_exports(str(root / "empty"))


def _command(argv):
    from keras_bert3d.cli import main

    return main(["models-config", *argv])


def test_command_writes_the_config_next_to_the_exports(tmp_path, capsys):
    root = _fake_exports(tmp_path / "saved_models", {"a": [1, 2], "b": [3]})
    assert _command([str(root), "--label", "stable=a:1"]) == 0
    config = mc.read_models_config(str(root / mc.CONFIG_NAME))
    entries = {c.name: c for c in config.model_config_list.config}
    assert list(entries["a"].model_version_policy.specific.versions) == [1, 2]  # labelled: every version
    assert dict(entries["a"].version_labels) == {"stable": 1}
    assert entries["b"].model_version_policy.WhichOneof("policy_choice") is None
    assert "wrote" in capsys.readouterr().out
    out = tmp_path / "other.config"
    assert _command([str(root), "-o", str(out), "--all-versions", "--container-root", "/m"]) == 0
    entries = {c.name: c for c in mc.read_models_config(str(out)).model_config_list.config}
    assert entries["b"].base_path == "/m/b" and list(entries["b"].model_version_policy.specific.versions) == [3]
    with pytest.raises(SystemExit):
        _command([str(root), "--label", "stable"])
