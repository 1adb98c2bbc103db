"""``VideoClassifier.presets`` and ``<Backbone>.presets``: the preset listing, as keras-hub's classes have it."""


class PresetListing:
    """A class attribute: name -> preset dict; a backbone class lists its own family, the others all presets."""

    def __get__(self, obj, owner):
        from keras_bert3d.backbones.backbone import Backbone
        from keras_bert3d.models.builder import get_preset, list_models

        family = owner if issubclass(owner, Backbone) and owner is not Backbone else None
        presets = {name: get_preset(name) for name in list_models()}
        return {name: preset for name, preset in presets.items()
                if family is None or preset["backbone"]["class"] == family.__name__}
