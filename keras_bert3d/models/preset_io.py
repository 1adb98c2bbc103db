"""Preset folders in keras-hub's layout, so a converted or fine-tuned model is shared as one folder.

``save_to_preset(model, folder)`` writes (keras-hub's file names and contents):

- ``config.json``: the backbone (``keras.saving.serialize_keras_object``), ``model.weights.h5`` its weights;
- ``task.json``: the whole VideoClassifier, ``task.weights.h5`` the weights outside the backbone (BERT, head);
- ``preprocessor.json``: the `VideoPreprocessor`; ``metadata.json``: versions, parameter count, date.

``load_preset(folder_or_name, ...)`` reads such a folder (or builds a named preset): the README's "Presets"
section says why this is our own code rather than keras-hub's loader, and what was measured.
"""
import datetime
import inspect
import json
import os

import keras

from keras_bert3d.atomic import atomic_folder

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
    from keras_bert3d import __version__
    from keras_bert3d.models.describe import count_parameters

    _write_json(folder, METADATA_FILE, {
        "keras_version": keras.version(), "keras_bert3d_version": __version__,
        "parameter_count": count_parameters(backbone),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"), "tasks": ["VideoClassifier"]})


def _save_to_preset(model, folder):
    """Write ``model`` (a VideoClassifier) as a preset folder (the files of the module docstring)."""
    save_backbone_preset(model.backbone, folder)
    _write_json(folder, TASK_FILE, _serialize(model))
    keras.saving.save_weights(model, os.path.join(folder, TASK_WEIGHTS_FILE),
                              objects_to_skip=list(model.backbone._flatten_layers()))
    if model.preprocessor is not None:
        _write_json(folder, PREPROCESSOR_FILE, _serialize(model.preprocessor))


def save_backbone_preset(backbone, folder):
    with atomic_folder(folder) as staging:  # written beside ``folder``, then swapped in whole
        _save_backbone_preset(backbone, staging)


def save_to_preset(model, folder):
    """Write ``model`` (a VideoClassifier) as a preset folder (the files of the module docstring); the folder
    is written beside ``folder`` and then replaces it whole (keras_bert3d.atomic.atomic_folder)."""
    with atomic_folder(folder) as staging:
        _save_to_preset(model, staging)


def is_preset_folder(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def _arguments(cls):
    return {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")}


def load_backbone_preset(folder, load_weights=True, **overrides):
    config = _read_json(folder, CONFIG_FILE)
    config["config"].update(overrides)
    backbone = keras.saving.deserialize_keras_object(config)
    if load_weights:
        backbone.load_weights(os.path.join(folder, MODEL_WEIGHTS_FILE))
    return backbone


def load_preset(folder, num_classes=None, load_weights=True, **overrides):
    """A VideoClassifier from a preset folder. ``overrides`` go to the backbone when it takes them (it owns
    what both take), else to the classifier. With a ``num_classes`` other than the saved one the head is new
    (initialised) and every other weight, BERT included, still loads."""
    from keras_bert3d.models.video_classifier import VideoClassifier

    task = _read_json(folder, TASK_FILE)["config"]
    backbone_config = _read_json(folder, CONFIG_FILE)
    backbone_cls = keras.saving.get_registered_object(backbone_config["registered_name"])
    backbone_args = _arguments(backbone_cls)
    backbone_overrides = {k: v for k, v in overrides.items() if k in backbone_args}
    classifier_overrides = {k: v for k, v in overrides.items() if k not in backbone_args}
    unknown = set(classifier_overrides) - _arguments(VideoClassifier)
    if unknown:
        raise ValueError(f"Unknown override(s) {sorted(unknown)} for the preset {folder}")
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
    model = VideoClassifier(backbone, **task)
    if load_weights:
        keras.saving.load_weights(model, os.path.join(folder, TASK_WEIGHTS_FILE),
                                  skip_mismatch=task["num_classes"] != saved_classes,
                                  objects_to_skip=list(backbone._flatten_layers()))
    return model
