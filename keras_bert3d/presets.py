"""The preset registry: the reference's architecture names -> configs, registered per backbone family.

Each family's presets are data in ``keras_bert3d/backbones/<family>_presets.py`` (``backbone_presets`` and
``reference_params_51``), which its backbone module registers with its class (`register_presets`), as
keras-hub's model folders do; `build_model` (models/builder.py) reads the registry. Importing this module
imports the four backbones, so `PRESETS` always holds every family.

Each preset has:
- ``backbone``: the backbone class name and its constructor arguments;
- ``classifier``: the VideoClassifier arguments (pooling, fusion, dropout ...);
- ``preprocessing``: what the weights expect (REFERENCE.md 5.6-5.7): frames, the frame size
  the video is resized to (height, width), the crop size, the pixel scale and the
  per-channel mean/std applied after scaling;
- ``optimizer``: the reference's recipe for it ("adamw" for two_stream_bert2.py, "sgd" for
  two_stream2.py; REFERENCE.md 5.1).
"""
PRESETS = {}              # name -> preset, in registration order
REFERENCE_PARAMS_51 = {}  # name -> the reference's parameter count with 51 classes (REFERENCE.md section 7)
BACKBONE_CLASSES = {}     # backbone class name -> class

SMALL = {"frame_size": [128, 170], "crop_size": 112}   # scale 0.5: R(2+1)D and ResNeXt
LARGE = {"frame_size": [256, 340], "crop_size": 224}   # scale 1: I3D and SlowFast


def make_preset(backbone_class, backbone, classifier, frames, size, norm, modality, optimizer):
    """One preset record: ``frames`` x ``size["crop_size"]``² clips of ``modality`` (flow: 2 channels)."""
    backbone = {"num_frames": frames, "image_size": size["crop_size"], **backbone}
    if modality == "flow":
        backbone["in_channels"] = 2
    return {
        "backbone": {"class": backbone_class, "config": backbone},
        "classifier": classifier,
        "preprocessing": {"modality": modality, "num_frames": frames, **size, **norm},
        "optimizer": optimizer,
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


import keras_bert3d.backbones  # noqa: E402,F401  (each family registers its presets)
