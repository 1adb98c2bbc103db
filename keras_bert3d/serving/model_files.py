"""The files a trained model lives in: a ``.keras`` file with its class names, and ``<name>/<version>/`` exports.

- `load_classifier`: a ``.keras`` file -> the model (uncompiled; keras_bert3d's classes registered first) and
  its class names: given, or the ``class_names.json`` a training run writes beside ``best.keras``. A legacy
  ``.h5`` model file is refused unless asked for as unsafe (`check_not_legacy_h5`).
- `read_class_names`: a JSON list or one name per line.
- `version_numbers`: the integer sub-folders of an export folder (TF Serving's ``<base>/<version>/``), which
  `next_version` (a new export), `saved_model_dir` (the newest export) and `models_config.scan_exports` read.
"""
import json
import os
import re
import typing

CLASS_NAMES_FILE = "class_names.json"
LEGACY_SUFFIX = ".h5"  # a Keras 2 full-model file; refused unless asked for (`check_not_legacy_h5`)
SAVED_MODEL_FILE = "saved_model.pb"


class Classifier(typing.NamedTuple):
    """A loaded ``.keras`` model and its class names (None when none were given or found)."""

    model: typing.Any
    class_names: typing.Optional[list]


def default_class_names(num_classes):
    return [f"class_{i}" for i in range(num_classes)]


def read_class_names(path):
    """Class names from a file: a JSON list, or one name per line (blank lines skipped)."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        names = json.loads(text)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected a JSON list of strings; received {type(names).__name__}")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def class_names_beside(model_path):
    """The class names a training run wrote next to its model (``class_names.json`` in the run folder of
    ``best.keras``/``last.keras``), or None when there is no such file."""
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), CLASS_NAMES_FILE)
    return read_class_names(path) if os.path.isfile(path) else None


def _register_classes():
    """Imports the packages whose classes a ``.keras`` file names, so that Keras can rebuild them."""
    import keras_bert3d.backbones  # noqa: F401
    import keras_bert3d.layers  # noqa: F401
    import keras_bert3d.models  # noqa: F401
    import keras_bert3d.optimizers  # noqa: F401


def check_not_legacy_h5(path, unsafe_legacy_h5=False):
    """Refuses a legacy ``.h5`` full-model file unless ``unsafe_legacy_h5``: Keras' HDF5 loader has had
    ``safe_mode`` bypasses (CVE-2025-8747, CVE-2025-9905), so such a file can run code; ``.weights.h5`` files
    (weights only) are not model files and never come here."""
    if os.fspath(path).endswith(LEGACY_SUFFIX) and not unsafe_legacy_h5:
        raise ValueError(f"{path}: a legacy .h5 model file can run code when loaded (Keras' HDF5 loader has had "
                         "safe_mode bypasses); save it as .keras, or load it only if you trust its author with "
                         "--unsafe-legacy-h5 (unsafe_legacy_h5=True)")


def load_classifier(path, class_names=None, suffixes=(".keras",), unsafe_legacy_h5=False):
    """A saved model file -> `Classifier` (model, class names).

    Loading a model file runs its author's choices: a ``.keras`` file is loaded with Keras' ``safe_mode`` (no
    Lambda code), a legacy ``.h5`` file only with ``unsafe_legacy_h5=True`` (`check_not_legacy_h5`). A
    SavedModel (`saved_model_dir`) is code, a TensorFlow graph that runs as written: load only your own.

    Args:
        path: a ``.keras`` file (``suffixes``: the endings accepted).
        class_names: a list of names; None: the run's ``class_names.json`` beside ``path``, if any.
        unsafe_legacy_h5: accept a legacy ``.h5`` full-model file (when ``suffixes`` holds ``.h5``). Unsafe:
            only for a file from someone you trust.
    """
    import keras

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path}")
    if not path.endswith(tuple(suffixes)):
        raise ValueError(f"expected a .keras model file; received {path}")
    check_not_legacy_h5(path, unsafe_legacy_h5)
    _register_classes()
    model = keras.saving.load_model(path, compile=False)
    return Classifier(model, list(class_names) if class_names is not None else class_names_beside(path))


def version_numbers(base, saved_models_only=True):
    """The sorted integer names of ``base``'s sub-folders (only those holding a ``saved_model.pb`` when
    ``saved_models_only``); ``[]`` when ``base`` is not a folder."""
    if not os.path.isdir(base):
        return []
    marker = SAVED_MODEL_FILE if saved_models_only else ""
    return sorted(int(name) for name in os.listdir(base)
                  if re.fullmatch(r"\d+", name) and os.path.exists(os.path.join(base, name, marker))
                  and os.path.isdir(os.path.join(base, name)))


def next_version(export_dir):
    """1 + the largest integer sub-directory name of ``export_dir`` (1 if none)."""
    return max(version_numbers(export_dir, saved_models_only=False), default=0) + 1


def saved_model_dir(path):
    """``path`` itself when it holds a ``saved_model.pb``, else its highest version folder that does."""
    if os.path.exists(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    versions = version_numbers(path)
    if not versions:
        raise FileNotFoundError(f"{path}: neither a SavedModel (no saved_model.pb) nor a folder of versions")
    return os.path.join(path, str(versions[-1]))
