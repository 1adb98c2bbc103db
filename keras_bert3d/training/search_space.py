"""The tuner's search space: what `keras_bert3d.training.tune` searches, as plain dicts, and how a spec becomes a
KerasTuner hyperparameter.

A spec is ``{"values": [...]}`` (a choice), ``{"min", "max"[, "step"][, "sampling"]}`` (a range: int when min,
max and step are ints) or a scalar (fixed). `resolve_space` merges a user's space file into `SEARCH_SPACE`,
`fit_space_to_model` checks it against the built model, `define` declares one name on a trial's ``hp``.
"""
import copy
import os

import yaml

BERT_KEYS = ("num_heads", "num_layers", "bert_dropout", "mask_keep_prob")  # VideoClassifier arguments
TRAIN_KEYS = ("learning_rate", "weight_decay")                             # train.*
MODEL_KEYS = ("freeze_backbone",)                                          # model.*
# name -> {"values": [...]} (a choice), {"min", "max"[, "step"][, "sampling": linear|log|reverse_log]}
# (a range: int when min, max and step are ints) or a scalar (fixed). num_heads choices that do not divide
# the model's token width are dropped.
SEARCH_SPACE = {
    "num_heads": {"values": [2, 4, 8]},
    "num_layers": {"values": [1, 2]},
    "bert_dropout": {"min": 0.0, "max": 0.3, "step": 0.1},
    "mask_keep_prob": {"min": 0.6, "max": 1.0, "step": 0.1},
    "learning_rate": {"min": 1e-6, "max": 1e-3, "sampling": "log"},
    "weight_decay": {"min": 1e-5, "max": 1e-2, "sampling": "log"},
    "freeze_backbone": {"values": [False, True]},
}
SGD_LEARNING_RATE = {"min": 1e-4, "max": 1e-1, "sampling": "log"}  # the default range with the SGD recipe


# ------------------------------------------------------------------------------------------------ space
def resolve_space(space=None, only=None):
    """`SEARCH_SPACE` updated with ``space`` (a dict or a YAML file; a ``null`` entry removes a name),
    restricted to ``only`` (names). Unknown names raise a ValueError naming them."""
    merged = copy.deepcopy(SEARCH_SPACE)
    if isinstance(space, (str, os.PathLike)):
        with open(space) as f:
            space = yaml.safe_load(f) or {}
    if not isinstance(space or {}, dict):
        raise ValueError(f"the search space must be a mapping of names to specs; received {space!r}")
    for name, spec in (space or {}).items():
        if name not in SEARCH_SPACE:
            raise ValueError(f"unknown hyperparameter {name!r} in the search space; known: {sorted(SEARCH_SPACE)}")
        if spec is None:
            merged.pop(name, None)
        else:
            merged[name] = spec
    if only:
        only = [only] if isinstance(only, str) else list(only)
        unknown = sorted(set(only) - set(SEARCH_SPACE))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown} in --only; known: {sorted(SEARCH_SPACE)}")
        merged = {name: spec for name, spec in merged.items() if name in only}
    for name, spec in merged.items():
        _check_spec(name, spec)
    return merged


def _check_spec(name, spec):
    if isinstance(spec, dict):
        if "values" in spec:
            if set(spec) - {"values"} or not isinstance(spec["values"], list) or not spec["values"]:
                raise ValueError(f"search space {name}: 'values' must be a non-empty list alone; received {spec!r}")
            return
        if set(spec) - {"min", "max", "step", "sampling"} or not {"min", "max"} <= set(spec):
            raise ValueError(f"search space {name}: a range is {{min, max[, step][, sampling]}}; received {spec!r}")
        if not spec["min"] <= spec["max"]:
            raise ValueError(f"search space {name}: min must be <= max; received {spec!r}")
        if spec.get("sampling", "linear") not in ("linear", "log", "reverse_log"):
            raise ValueError(f"search space {name}: sampling must be linear, log or reverse_log; received {spec!r}")
    elif isinstance(spec, list):
        raise ValueError(f"search space {name}: write a choice as {{values: {spec!r}}}")


def define(hp, name, spec):
    """Declares ``name`` on the KerasTuner ``hp`` from its spec and returns the trial's value."""
    if not isinstance(spec, dict):
        return hp.Fixed(name, spec)
    if "values" in spec:
        values = spec["values"]
        if sorted(values, key=str) == [False, True]:
            return hp.Boolean(name, default=values[0])
        return hp.Choice(name, values)
    low, high, step = spec["min"], spec["max"], spec.get("step")
    sampling = spec.get("sampling", "linear")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1)):
        return hp.Int(name, low, high, step=step, sampling=sampling)
    value = hp.Float(name, float(low), float(high), step=step, sampling=sampling)
    return round(value, 10) if step else value


def _token_widths(model):
    return [layer.input.shape[-1] for layer in model.bert_layers().values()]


def fit_space_to_model(space, model):
    """Checks the space against the built base model: BERT names need ``pooling="bert"``; ``num_heads``
    choices keep the divisors of every BERT's token width."""
    widths = _token_widths(model)
    bert_names = [name for name in space if name in BERT_KEYS]
    if bert_names and not widths:
        raise ValueError(f"the model {model.name!r} has no BERT pooling: drop {bert_names} from the search "
                         "(--only or a space file with null entries)")
    spec = space.get("num_heads")
    if isinstance(spec, dict) and "values" in spec:
        kept = [h for h in spec["values"] if all(w % h == 0 for w in widths)]
        if not kept:
            raise ValueError(f"no num_heads choice in {spec['values']} divides the token width(s) {widths}")
        space = dict(space, num_heads={"values": kept})
    return space
