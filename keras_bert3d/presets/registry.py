"""The preset registry: the reference's architecture names -> configs, registered per backbone family.

It imports no family: each family's presets are data in ``keras_bert3d/backbones/<family>_presets.py``
(``backbone_presets`` and ``reference_params_51``), which its backbone module registers with its class
(`register_presets`), as keras-hub's model folders do. The ``keras_bert3d.backbones`` package imports its four
families, so whoever holds a backbone class (``Backbone.presets``, ``models.builder``) sees every family.

Each preset has:
- ``backbone``: the backbone class name and its constructor arguments;
- ``classifier``: the VideoClassifier arguments (pooling, fusion, dropout ...);
- ``preprocessing``: what the weights expect (REFERENCE.md 5.6-5.7): frames, the frame size
  the video is resized to (height, width), the crop size, the pixel scale and the
  per-channel mean/std applied after scaling;
- ``optimizer``: the reference's recipe for it (`reference_recipe`; REFERENCE.md 5.1).
"""
import copy
import difflib
import math

PRESETS = {}              # name -> preset, in registration order
REFERENCE_PARAMS_51 = {}  # name -> the reference's parameter count with 51 classes (REFERENCE.md section 7)
BACKBONE_CLASSES = {}     # backbone class name -> class

SMALL = {"frame_size": [128, 170], "crop_size": 112}   # scale 0.5: R(2+1)D and ResNeXt
LARGE = {"frame_size": [256, 340], "crop_size": 224}   # scale 1: I3D and SlowFast

BN_BUFFERS = ("moving_mean", "moving_variance")


def reference_recipe(pooling):
    """The reference's default recipe for a head: ``"adamw"`` with BERT pooling (two_stream_bert2.py), ``"sgd"``
    otherwise (two_stream2.py). The presets, ``VideoClassifier.recipe`` and training's ``optimizer: auto`` use it."""
    return "adamw" if pooling == "bert" else "sgd"


def make_preset(backbone_class, backbone, classifier, frames, size, norm, modality, optimizer=None):
    """One preset record: ``frames`` x ``size["crop_size"]``² clips of ``modality`` (flow: 2 channels);
    ``optimizer=None``: the `reference_recipe` of the classifier's pooling."""
    backbone = {"num_frames": frames, "image_size": size["crop_size"], **backbone}
    if modality == "flow":
        backbone["in_channels"] = 2
    return {
        "backbone": {"class": backbone_class, "config": backbone},
        "classifier": classifier,
        "preprocessing": {"modality": modality, "num_frames": frames, **size, **norm},
        "optimizer": optimizer or reference_recipe(classifier["pooling"]),
    }


def register_presets(presets, backbone_cls, reference_params=None):
    """Registers ``presets`` (name -> `make_preset` record) as presets of ``backbone_cls``; all or nothing."""
    for name, preset in presets.items():
        if preset["backbone"]["class"] != backbone_cls.__name__:
            raise ValueError(f"preset {name} is for {preset['backbone']['class']}, not {backbone_cls.__name__}")
        if name in PRESETS and PRESETS[name] != preset:
            raise ValueError(f"preset {name} is already registered with another config")
    PRESETS.update(presets)
    BACKBONE_CLASSES[backbone_cls.__name__] = backbone_cls
    REFERENCE_PARAMS_51.update(reference_params or {})


def preset_names(cls=None):
    """The registered names in registration order: those of ``cls``'s family when ``cls`` is (a subclass of) a
    registered backbone class, else all of them (``Backbone``, ``VideoClassifier``, ``None``)."""
    family = next((c.__name__ for c in BACKBONE_CLASSES.values() if isinstance(cls, type) and issubclass(cls, c)),
                  None)
    return [name for name, preset in PRESETS.items() if family in (None, preset["backbone"]["class"])]


def get_preset(name):
    """A deep copy of preset ``name``; unknown names raise with the closest matches."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} `bert3d models` lists all {len(PRESETS)}.")
    return copy.deepcopy(PRESETS[name])


def backbone_class(name):
    """The registered backbone class called ``name`` (e.g. ``"R2Plus1DBackbone"``)."""
    return BACKBONE_CLASSES[name]


class PresetListing:
    """``<Class>.presets``, as keras-hub's classes have it: name -> preset dict (`preset_names` of the class)."""

    def __get__(self, obj, owner):
        return {name: get_preset(name) for name in preset_names(owner)}


def count_parameters(model):
    """Parameters as PyTorch counts them (the count `REFERENCE_PARAMS_51` holds and preset folders record): every
    weight except BatchNorm running statistics (which Keras' ``count_params`` includes), trainable or frozen."""
    return sum(math.prod(w.shape) for w in model.weights if not w.path.endswith(BN_BUFFERS))
