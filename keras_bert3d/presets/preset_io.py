"""Preset folders in keras-hub's layout, so a converted or fine-tuned model is shared as one folder.

Below ``backbones/`` and ``models/``: the functions take the object or the class they write or build, as
keras-hub's ``preset_utils`` does (``Backbone.from_preset`` and ``VideoClassifier.from_preset`` pass their class).
``save_task_preset(model, folder)`` writes (keras-hub's file names and contents):

- ``config.json``: the backbone (``keras.saving.serialize_keras_object``), ``model.weights.h5`` its weights;
- ``task.json``: the whole VideoClassifier, ``task.weights.h5`` the weights outside the backbone (BERT, head);
- ``preprocessor.json``: the `VideoPreprocessor`; ``metadata.json``: versions, parameter count, date.

``load_task_preset(cls, folder, ...)`` and ``load_backbone_preset(folder, ...)`` read such a folder: the README's
"Presets" section says why this is our own code rather than keras-hub's loader, and what was measured.
"""
import datetime
import json
import os

import keras

from keras_bert3d.atomic import atomic_folder
from keras_bert3d.presets.overrides import route_overrides
from keras_bert3d.presets.registry import count_parameters
from keras_bert3d.version import __version__

CONFIG_FILE, MODEL_WEIGHTS_FILE = "config.json", "model.weights.h5"
TASK_FILE, TASK_WEIGHTS_FILE = "task.json", "task.weights.h5"
PREPROCESSOR_FILE, METADATA_FILE = "preprocessor.json", "metadata.json"


def _serialize(obj):
    config = keras.saving.serialize_keras_object(obj)
    for key in ("compile_config", "build_config"):
        config.pop(key, None)
    return config


def _write_json(folder, name, value):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)


def _read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not a preset folder: no {name}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _save_backbone_preset(backbone, folder):
    os.makedirs(folder, exist_ok=True)
    _write_json(folder, CONFIG_FILE, _serialize(backbone))
    backbone.save_weights(os.path.join(folder, MODEL_WEIGHTS_FILE))
    _write_json(folder, METADATA_FILE, {
        "keras_version": keras.version(), "keras_bert3d_version": __version__,
        "parameter_count": count_parameters(backbone),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"), "tasks": ["VideoClassifier"]})


def _save_task_preset(model, folder):
    """Write ``model`` (a VideoClassifier) as a preset folder (the files of the module docstring)."""
    _save_backbone_preset(model.backbone, folder)
    _write_json(folder, TASK_FILE, _serialize(model))
    keras.saving.save_weights(model, os.path.join(folder, TASK_WEIGHTS_FILE),
                              objects_to_skip=list(model.backbone._flatten_layers()))
    if model.preprocessor is not None:
        _write_json(folder, PREPROCESSOR_FILE, _serialize(model.preprocessor))


def save_backbone_preset(backbone, folder):
    """``config.json``, ``model.weights.h5`` and ``metadata.json`` of ``backbone`` in ``folder``, written
    beside it and then swapped in whole (keras_bert3d.atomic.atomic_folder)."""
    with atomic_folder(folder) as staging:
        _save_backbone_preset(backbone, staging)


def save_task_preset(model, folder):
    """Write ``model`` (a VideoClassifier) as a preset folder (the files of the module docstring); the folder
    is written beside ``folder`` and then replaces it whole (keras_bert3d.atomic.atomic_folder)."""
    with atomic_folder(folder) as staging:
        _save_task_preset(model, staging)


def is_preset_folder(path):
    """True for a folder written by `save_backbone_preset` / `save_task_preset` (it has a config.json)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def _backbone_config(folder):
    config = _read_json(folder, CONFIG_FILE)
    return config, keras.saving.get_registered_object(config["registered_name"])


def load_backbone_preset(folder, load_weights=True, **overrides):
    """The backbone of a preset folder; ``overrides`` change its arguments."""
    config, backbone_cls = _backbone_config(folder)
    route_overrides(overrides, backbone_cls, source=f"the backbone of the preset {folder}")
    config["config"].update(overrides)
    backbone = keras.saving.deserialize_keras_object(config)
    if load_weights:
        backbone.load_weights(os.path.join(folder, MODEL_WEIGHTS_FILE))
    return backbone


def load_task_preset(cls, folder, num_classes=None, load_weights=True, **overrides):
    """A ``cls`` (VideoClassifier) from a preset folder. ``overrides`` are routed by `route_overrides` (the
    backbone owns what both take). With a ``num_classes`` other than the saved one the head is new (initialised)
    and every other weight, BERT included, still loads."""
    task = _read_json(folder, TASK_FILE)["config"]
    backbone_overrides, classifier_overrides, _ = route_overrides(overrides, _backbone_config(folder)[1], cls,
                                                                  source=f"the preset {folder}")
    backbone = load_backbone_preset(folder, load_weights, **backbone_overrides)
    task.pop("backbone")
    task.pop("preprocessing", None)
    if os.path.isfile(os.path.join(folder, PREPROCESSOR_FILE)):
        task["preprocessor"] = keras.saving.deserialize_keras_object(_read_json(folder, PREPROCESSOR_FILE))
    elif isinstance(task.get("preprocessor"), dict):
        task["preprocessor"] = keras.saving.deserialize_keras_object(task["preprocessor"])
    saved_classes = task["num_classes"]
    task.update(classifier_overrides)
    if num_classes is not None:
        task["num_classes"] = num_classes
    model = cls(backbone, **task)
    if load_weights:
        keras.saving.load_weights(model, os.path.join(folder, TASK_WEIGHTS_FILE),
                                  skip_mismatch=task["num_classes"] != saved_classes,
                                  objects_to_skip=list(backbone._flatten_layers()))
    return model
