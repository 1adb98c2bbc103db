"""TF Serving's ``models.config``: several models, several versions each, from one model server.

``saved_models/`` holds ``<name>/<version>/`` exports; `scan_exports` finds them (`model_files.version_numbers`)
and `write_models_config` writes the ``ModelServerConfig`` text proto (tensorflow-serving-api's
``model_server_config_pb2``) that serves them from the container path they are mounted at::

    bert3d models-config saved_models --all-versions --label stable=NAME:1
    docker run --rm -p 8500:8500 -p 8501:8501 -v "$PWD/saved_models:/models" tensorflow/serving \\
        --model_config_file=/models/models.config --model_config_file_poll_wait_seconds=60

Version policy per model: the versions listed (``specific``), every version on disk (``all``), or TF
Serving's default, the latest only (``None``). Version labels (``stable``, ``canary``) must name served
versions; clients then ask for ``/v1/models/<name>/labels/<label>``.
"""
import os
import re

from keras_bert3d.serving.model_files import version_numbers

CONTAINER_ROOT = "/models"
CONFIG_NAME = "models.config"


def scan_exports(root):
    """``{model name: sorted versions}`` of the SavedModels ``root/<name>/<int>/saved_model.pb``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no export directory {root}")
    found = {name: version_numbers(os.path.join(root, name)) for name in sorted(os.listdir(root))}
    return {name: versions for name, versions in found.items() if versions}


def build_models_config(models, container_root=CONTAINER_ROOT, labels=None):
    """A ``ModelServerConfig`` proto.

    Args:
        models: ``{name: versions}`` where versions is a list of ints (serve exactly those), ``"all"``
            or ``None`` (the latest only).
        container_root: where the model folders are mounted in the server (``base_path`` =
            ``container_root/<name>``).
        labels: ``{name: {label: version}}``; each version must be one that is served.
    """
    from tensorflow_serving.config import model_server_config_pb2

    if not models:
        raise ValueError(f"`models` must name at least one model; received models={models!r}")
    labels = labels or {}
    unknown = set(labels) - set(models)
    if unknown:
        raise ValueError(f"labels name models that are not served: {sorted(unknown)}; served: {sorted(models)}")
    config = model_server_config_pb2.ModelServerConfig()
    for name, versions in models.items():
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ValueError(f"model names are letters, digits, '_', '-' and '.'; received name={name!r}")
        entry = config.model_config_list.config.add(name=name, base_path=f"{container_root.rstrip('/')}/{name}",
                                                    model_platform="tensorflow")
        if versions == "all":
            entry.model_version_policy.all.SetInParent()
        elif versions is not None:
            versions = sorted(set(int(v) for v in versions))
            if not versions or versions[0] < 1:
                raise ValueError(f"{name}: versions must be positive ints; received versions={versions!r}")
            entry.model_version_policy.specific.versions.extend(versions)
        for label, version in sorted(labels.get(name, {}).items()):
            if isinstance(versions, list) and int(version) not in versions:
                raise ValueError(f"{name}: label {label!r} names version {version}, which is not served "
                                 f"(served: {versions})")
            entry.version_labels[label] = int(version)
    return config


def models_config_text(models, container_root=CONTAINER_ROOT, labels=None):
    from google.protobuf import text_format

    return text_format.MessageToString(build_models_config(models, container_root, labels))


def write_models_config(path, models, container_root=CONTAINER_ROOT, labels=None):
    """Write the text proto to ``path`` (atomically); returns ``path``."""
    text = models_config_text(models, container_root, labels)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def read_models_config(path):
    """Parse a ``models.config`` back into a ``ModelServerConfig``."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def config_for_exports(root, all_versions=False, container_root=CONTAINER_ROOT, labels=None):
    """``{name: versions}`` for every export under ``root``: all versions on disk, or the latest only."""
    found = scan_exports(root)
    if not found:
        raise ValueError(f"no SavedModel exports (<name>/<version>/saved_model.pb) under {root}")
    return {name: (versions if all_versions else None) for name, versions in found.items()}


if __name__ == "__main__":  # the command line lives in cli/ (`bert3d models-config`); this keeps `python -m` working
    import importlib
    import sys

    sys.exit(importlib.import_module("keras_bert3d.cli").main(["models-config", *sys.argv[1:]]))
