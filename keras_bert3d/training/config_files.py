"""Training config files: YAML or JSON plus ``key=value`` overrides, validated against the schema of
keras_bert3d.training.config.

``load_config(path, ["train.learning_rate=1e-4", "model.overrides.num_heads=4"])`` returns the resolved
dict; override values are parsed as YAML scalars (``null``, ``true``, ``1e-4``, ``[1, 1, 1, 1]``).
"""
import json
import os
import re

import yaml

from keras_bert3d.atomic import atomic_open
from keras_bert3d.training.config import validate_config


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-5`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_override(text):
    """``"train.learning_rate=1e-4"`` -> ``("train.learning_rate", 1e-4)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"an override is key=value, e.g. train.epochs=10; received {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"an override needs a key before '='; received {text!r}")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse the value of override {text!r}: {err}") from err
    return key, value


def _set_dotted(tree, key, value):
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"override `{key}`: `{'.'.join(parts[:i + 1])}` is not a mapping")
        node = child
    node[parts[-1]] = value


def load_config(path=None, overrides=()):
    """The validated config of a YAML/JSON file (``None``: the defaults) after dotted ``overrides``.

    Args:
        path: a ``.yaml``/``.yml``/``.json`` file, or None.
        overrides: ``["key=value", ...]`` or a ``{dotted key: value}`` dict; e.g.
            ``"train.epochs=3"``, ``"model.overrides.num_heads=2"``, ``"model.weights=null"``.
    """
    config = {}
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path) as f:
            text = f.read()
        try:
            config = json.loads(text) if path.endswith(".json") else yaml.load(text, Loader=_Loader)
        except (ValueError, yaml.YAMLError) as err:
            raise ValueError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {err}") from err
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise ValueError(f"{path} must hold a mapping at the top level; received {type(config).__name__}")
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for key, value in items:
        _set_dotted(config, key, value)
    return validate_config(config)


def save_config(config, path):
    """Writes ``config`` as YAML (``.json``: JSON) atomically (temporary file + rename)."""
    path = os.fspath(path)
    with atomic_open(path, "w") as f:
        if path.endswith(".json"):
            json.dump(config, f, indent=2)
        else:
            yaml.safe_dump(config, f, sort_keys=False, default_flow_style=None)
    return path
