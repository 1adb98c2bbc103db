"""Routing a preset's overrides to the backbone or the classifier: one rule for named presets and preset folders.

The classes are arguments (as keras-hub's ``preset_utils`` takes the class it builds), so this module sits below
``backbones/`` and ``models/``.
"""
import inspect


def constructor_arguments(cls):
    """The named arguments of ``cls.__init__`` (none for ``cls=None``)."""
    if cls is None:
        return set()
    return {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")}


def route_overrides(overrides, backbone_cls, classifier_cls=None, record_keys=(), source="the preset"):
    """``(backbone, classifier, record)`` dicts of ``overrides``.

    ``record_keys`` (e.g. the preprocessing record's ``frame_size``) come first; then an argument of
    ``backbone_cls`` goes to the backbone, which owns what both take (SlowFast's ``fusion``: the classifier reads
    it from the backbone); then an argument of ``classifier_cls`` (``None``: a backbone alone) to the classifier.
    Anything else raises a ValueError naming the valid keys.
    """
    backbone_args = constructor_arguments(backbone_cls)
    classifier_args = constructor_arguments(classifier_cls) - {"backbone"}
    routed = ({}, {}, {})
    for key, value in overrides.items():
        if key in record_keys:
            routed[2][key] = value
        elif key in backbone_args:
            routed[0][key] = value
        elif key in classifier_args:
            routed[1][key] = value
    unknown = sorted(set(overrides) - set().union(*(d.keys() for d in routed)))
    if unknown:
        raise ValueError(f"Unknown override(s) {unknown} for {source}; valid: "
                         f"{sorted(backbone_args | classifier_args | set(record_keys))}")
    return routed
