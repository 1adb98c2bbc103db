"""build_model / list_models / get_preset: the registered presets (keras_bert3d.presets) -> VideoClassifier.

Importing this module imports the backbones package (through `VideoClassifier`), so the registry holds every
family when these run.
"""
from keras_bert3d.models import preset_configs
from keras_bert3d.models.video_classifier import VideoClassifier
from keras_bert3d.presets.registry import get_preset, preset_names

__all__ = ["build_model", "get_preset", "list_models", "resolve_preset"]


def list_models():
    """Every preset name (the reference's architecture names)."""
    return preset_names()


def resolve_preset(name, **overrides):
    """The preset's (backbone class, backbone config, classifier config) after ``overrides``
    (`keras_bert3d.models.preset_configs.resolve_preset` for a VideoClassifier)."""
    return preset_configs.resolve_preset(name, VideoClassifier, **overrides)


def build_model(name, num_classes, **overrides):
    """Build preset ``name`` (e.g. ``"rgb_r2plus1d_32f_34_bert10"``) with ``num_classes`` classes.

    ``overrides`` change any backbone or classifier argument, e.g.
    ``build_model("rgb_r2plus1d_32f_34_bert10", 101, num_heads=4, stage_blocks=[1, 1, 1, 1])``.
    """
    return preset_configs.build_preset(name, VideoClassifier, num_classes, **overrides)
