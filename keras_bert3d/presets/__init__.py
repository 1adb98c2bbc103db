"""Presets: the registry of named presets and the preset-folder I/O.

Layer: above ``validation``, ``backend`` and ``layers``, below ``backbones`` and ``models``. It imports only
``keras`` and ``keras_bert3d.version``; the functions take the class they build as an argument, as keras-hub's
``preset_utils`` does. ``backbones`` register their families here (``backbones/<family>_presets.py`` + the family's
backbone module) and read it (``Backbone.presets``, ``Backbone.from_preset``); ``models`` read it
(``list_models``, ``build_model``, ``VideoClassifier.from_preset``). Nothing here imports a family: a lookup sees
the families once ``keras_bert3d.backbones`` is imported, which every holder of a backbone class has done.

- `registry`: ``PRESETS`` and friends, `register_presets`, `get_preset`, `preset_names`, `reference_recipe`;
- `overrides`: `route_overrides`, the one rule sending an override to the backbone or the classifier;
- `preset_io`: keras-hub's preset folder layout (imports keras, so it is not imported here).
"""
from keras_bert3d.presets.registry import (BACKBONE_CLASSES, LARGE, PRESETS, REFERENCE_PARAMS_51, SMALL,
                                           backbone_class, get_preset, make_preset, preset_names, reference_recipe,
                                           register_presets)

__all__ = ["BACKBONE_CLASSES", "LARGE", "PRESETS", "REFERENCE_PARAMS_51", "SMALL", "backbone_class", "get_preset",
           "make_preset", "preset_names", "reference_recipe", "register_presets"]
