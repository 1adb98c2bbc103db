"""build_model / list_models: the registered presets (keras_bert3d/presets.py) -> VideoClassifier."""
import copy
import difflib
import inspect

from keras_bert3d.models.video_classifier import VideoClassifier
from keras_bert3d.models.video_preprocessor import check_preprocessing
from keras_bert3d.presets import BACKBONE_CLASSES, PRESETS

# Overrides that change only the preprocessing record the model carries.
PREPROCESSING_KEYS = ("frame_size", "scale", "mean", "std")


def list_models():
    """Every preset name (the reference's architecture names)."""
    return list(PRESETS)


def backbone_class(name):
    """The registered backbone class called ``name`` (e.g. ``"R2Plus1DBackbone"``)."""
    return BACKBONE_CLASSES[name]


def get_preset(name):
    """A deep copy of preset ``name``; unknown names raise with the closest matches."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} `bert3d models` lists all {len(PRESETS)}.")
    return copy.deepcopy(PRESETS[name])


def _arguments(cls):
    return {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs", "args")}


def resolve_preset(name, **overrides):
    """The preset's (backbone class, backbone config, classifier config) after ``overrides``.

    An override goes to the backbone if it names a backbone argument (the backbone owns what
    both take, e.g. SlowFast's ``fusion``, which the classifier reads from it), else to the classifier; ``num_frames`` and ``image_size`` also update the preprocessing record, and
    ``frame_size``, ``scale``, ``mean`` and ``std`` change only the preprocessing record (e.g.
    ``frame_size=[48, 64]`` for small videos: the size frames are resized to before cropping).
    """
    preset = get_preset(name)
    cls = backbone_class(preset["backbone"]["class"])
    backbone_config = preset["backbone"]["config"]
    classifier_config = dict(preset["classifier"], preprocessing=preset["preprocessing"], recipe=preset["optimizer"])
    classifier_args, backbone_args = _arguments(VideoClassifier) - {"backbone"}, _arguments(cls)
    preprocessing = classifier_config["preprocessing"]
    for key, value in overrides.items():
        if key in PREPROCESSING_KEYS:
            preprocessing[key] = list(value) if isinstance(value, (list, tuple)) else value
        elif key in backbone_args:  # the backbone owns what both take (SlowFast's fusion)
            backbone_config[key] = value
            classifier_config.pop(key, None)
            if key == "num_frames":
                preprocessing["num_frames"] = value
            elif key == "image_size":
                preprocessing["crop_size"] = value
        elif key in classifier_args:
            classifier_config[key] = value
        else:
            raise ValueError(f"Unknown override {key}={value!r} for {name}; valid: "
                             f"{sorted(classifier_args | backbone_args | set(PREPROCESSING_KEYS))}")
    check_preprocessing(preprocessing)
    return cls, backbone_config, classifier_config


def build_model(name, num_classes, **overrides):
    """Build preset ``name`` (e.g. ``"rgb_r2plus1d_32f_34_bert10"``) with ``num_classes`` classes.

    ``overrides`` change any backbone or classifier argument, e.g.
    ``build_model("rgb_r2plus1d_32f_34_bert10", 101, num_heads=4, stage_blocks=[1, 1, 1, 1])``.
    """
    cls, backbone_config, classifier_config = resolve_preset(name, **overrides)
    backbone = cls(**backbone_config, name="backbone")
    return VideoClassifier(backbone, num_classes, name=name, **classifier_config)
