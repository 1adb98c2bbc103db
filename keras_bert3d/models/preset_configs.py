"""A named preset + overrides -> its backbone class, backbone config and classifier config, then the model.

Below `video_classifier` (the classifier class is an argument) and above the registry (keras_bert3d.presets):
``VideoClassifier.from_preset(name)`` and ``build_model`` / ``resolve_preset`` (models/builder.py) use it.
"""
from keras_bert3d.models.video_preprocessor import PREPROCESSING_KEYS, check_preprocessing
from keras_bert3d.presets.overrides import route_overrides
from keras_bert3d.presets.registry import backbone_class, get_preset

# Backbone arguments the preprocessing record follows: a clip of num_frames frames, cropped to image_size.
RECORD_FOLLOWS = {"num_frames": "num_frames", "image_size": "crop_size"}
# Overrides that change only the preprocessing record; the modality stays the preset's (the backbone's channels).
RECORD_OVERRIDES = tuple(k for k in PREPROCESSING_KEYS if k != "modality" and k not in RECORD_FOLLOWS.values())


def resolve_preset(name, classifier_cls, **overrides):
    """The preset's (backbone class, backbone config, ``classifier_cls`` config) after ``overrides``.

    An override goes to the backbone if it names a backbone argument (the backbone owns what both take, e.g.
    SlowFast's ``fusion``, which the classifier reads from it), else to the classifier; ``num_frames`` and
    ``image_size`` also update the preprocessing record, and ``frame_size``, ``scale``, ``mean`` and ``std``
    change only the preprocessing record (e.g. ``frame_size=[48, 64]`` for small videos: the size frames are
    resized to before cropping).
    """
    preset = get_preset(name)
    cls = backbone_class(preset["backbone"]["class"])
    backbone_config = preset["backbone"]["config"]
    classifier_config = dict(preset["classifier"], preprocessing=preset["preprocessing"], recipe=preset["optimizer"])
    to_backbone, to_classifier, to_record = route_overrides(overrides, cls, classifier_cls, RECORD_OVERRIDES, name)
    preprocessing = classifier_config["preprocessing"]
    preprocessing.update({k: list(v) if isinstance(v, (list, tuple)) else v for k, v in to_record.items()})
    backbone_config.update(to_backbone)
    classifier_config.update(to_classifier)
    for key, value in to_backbone.items():
        classifier_config.pop(key, None)
        if key in RECORD_FOLLOWS:
            preprocessing[RECORD_FOLLOWS[key]] = value
    check_preprocessing(preprocessing)
    return cls, backbone_config, classifier_config


def build_preset(name, classifier_cls, num_classes, **overrides):
    """Preset ``name`` built as a ``classifier_cls`` (initialised weights) with ``num_classes`` classes."""
    cls, backbone_config, classifier_config = resolve_preset(name, classifier_cls, **overrides)
    backbone = cls(**backbone_config, name="backbone")
    return classifier_cls(backbone, num_classes, name=name, **classifier_config)
