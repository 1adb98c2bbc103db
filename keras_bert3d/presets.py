"""The reference's architecture names -> configs. Data only; `build_model` lives in models/builder.py.

Each preset has:
- ``backbone``: the backbone class name and its constructor arguments;
- ``classifier``: the VideoClassifier arguments (pooling, fusion, dropout ...);
- ``preprocessing``: what the weights expect (REFERENCE.md 5.6-5.7): frames, the frame size
  the video is resized to (height, width), the crop size, the pixel scale and the
  per-channel mean/std applied after scaling;
- ``optimizer``: the reference's recipe for it ("adamw" for two_stream_bert2.py, "sgd" for
  two_stream2.py; REFERENCE.md 5.1).
"""

_R2PLUS1D_RGB = {"scale": 1 / 255, "mean": [0.43216, 0.394666, 0.37645], "std": [0.22803, 0.22145, 0.216989]}
_RESNEXT_RGB = {"scale": 1.0, "mean": [114.7748, 107.7354, 99.4750], "std": [1.0, 1.0, 1.0]}
_RESNEXT_FLOW = {"scale": 1.0, "mean": [127.5, 127.5], "std": [1.0, 1.0]}
_I3D_RGB = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
_I3D_FLOW = {"scale": 1 / 255, "mean": [0.5, 0.5], "std": [0.5, 0.5]}
_SLOWFAST_RGB = {"scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}

_SMALL = {"frame_size": [128, 170], "crop_size": 112}   # scale 0.5: R(2+1)D and ResNeXt
_LARGE = {"frame_size": [256, 340], "crop_size": 224}   # scale 1: I3D and SlowFast


def _preset(backbone_class, backbone, classifier, frames, size, norm, modality, optimizer):
    backbone = {"num_frames": frames, "image_size": size["crop_size"], **backbone}
    if modality == "flow":
        backbone["in_channels"] = 2
    return {
        "backbone": {"class": backbone_class, "config": backbone},
        "classifier": classifier,
        "preprocessing": {"modality": modality, "num_frames": frames, **size, **norm},
        "optimizer": optimizer,
    }


def _r2plus1d(frames, pooling):
    return _preset("R2Plus1DBackbone", {"depth": 34}, {"pooling": pooling, "dropout": 0.8},
                   frames, _SMALL, _R2PLUS1D_RGB, "rgb", "adamw" if pooling == "bert" else "sgd")


def _resnext(modality, reduction=None, pooling="tgap", optimizer="adamw", **classifier):
    norm = _RESNEXT_RGB if modality == "rgb" else _RESNEXT_FLOW
    dropout = 0.7 if (modality == "flow" and pooling == "tgap") else 0.8
    return _preset("ResNeXt3DBackbone", {"depth": 101, "feature_reduction": reduction},
                   {"pooling": pooling, "dropout": dropout, **classifier}, 64, _SMALL, norm, modality, optimizer)


def _i3d(modality, reduction=None, pooling="bert"):
    norm = _I3D_RGB if modality == "rgb" else _I3D_FLOW
    if pooling == "tgap":
        classifier = {"pooling": "tgap", "dropout": 0.7 if modality == "flow" else 0.8}
    else:
        classifier = {"pooling": "bert", "dropout": 0.8, "l2_normalize_tokens": True, "bert_initializer": "bert2"}
    return _preset("I3DBackbone", {"feature_reduction": reduction}, classifier, 64, _LARGE, norm, modality,
                   "adamw" if pooling == "bert" else "sgd")


def _slowfast(reduction=None, fusion=None):
    classifier = {"pooling": "tgap" if fusion is None else "bert", "dropout": 0.8}  # fusion: the backbone's
    return _preset("SlowFastBackbone", {"depth": 50, "feature_reduction": reduction, "fusion": fusion},
                   classifier, 64, _LARGE, _SLOWFAST_RGB, "rgb", "sgd" if fusion is None else "adamw")


PRESETS = {
    "rgb_r2plus1d_32f_34": _r2plus1d(32, "tgap"),
    "rgb_r2plus1d_32f_34_bert10": _r2plus1d(32, "bert"),
    "rgb_r2plus1d_64f_34_bert10": _r2plus1d(64, "bert"),
    "rgb_resneXt3D64f101": _resnext("rgb", optimizer="sgd"),
    "rgb_resneXt3D64f101_adamw": _resnext("rgb"),
    "rgb_resneXt3D64f101_bert10_FRMB": _resnext("rgb", "frmb", "bert"),
    "rgb_resneXt3D64f101_bert10_FRAB": _resnext("rgb", "frab", "bert"),
    "rgb_resneXt3D64f101_FRMB_adamw": _resnext("rgb", "frmb"),
    "rgb_resneXt3D64f101_concatenation": _resnext("rgb", "frmb", "concat", head_hidden_dim=1550),
    "rgb_resneXt3D64f101_FRMB_NLB_concatenation": _resnext("rgb", "frmb", "nonlocal_concat", head_hidden_dim=1000),
    "rgb_resneXt3D64f101_FRMB_lstm": _resnext("rgb", "frmb", "lstm"),
    "rgb_I3D64f": _i3d("rgb", pooling="tgap"),
    "rgb_I3D64f_bert2": _i3d("rgb"),
    "rgb_I3D64f_bert2_FRMB": _i3d("rgb", "frmb"),
    "rgb_I3D64f_bert2_FRAB": _i3d("rgb", "frab"),
    "rgb_slowfast64f_50": _slowfast(),
    "rgb_slowfast64f_50_bert10_FRAB_early": _slowfast("frab", "early"),
    "rgb_slowfast64f_50_bert10_FRMB_early": _slowfast("frmb", "early"),
    "rgb_slowfast64f_50_bert10_FRAB_late": _slowfast("frab", "late"),
    "rgb_slowfast64f_50_bert10_FRMB_late": _slowfast("frmb", "late"),
    "flow_resneXt3D64f101": _resnext("flow", optimizer="sgd"),
    "flow_resneXt3D64f101_bert10_FRMB": _resnext("flow", "frmb", "bert"),
    "flow_resneXt3D64f101_bert10_FRAB": _resnext("flow", "frab", "bert"),
    "flow_I3D64f": _i3d("flow", pooling="tgap"),
    "flow_I3D64f_bert2": _i3d("flow"),
    "flow_I3D64f_bert2_FRMB": _i3d("flow", "frmb"),
    "flow_I3D64f_bert2_FRAB": _i3d("flow", "frab"),
}

# REFERENCE.md section 7 (51 classes; SlowFast: the "used" count, without the unused head).
REFERENCE_PARAMS_51 = {
    "rgb_r2plus1d_32f_34": 63_518_138,
    "rgb_r2plus1d_32f_34_bert10": 66_673_594,
    "rgb_r2plus1d_64f_34_bert10": 66_675_642,
    "rgb_resneXt3D64f101": 47_625_715,
    "rgb_resneXt3D64f101_adamw": 47_625_715,
    "rgb_resneXt3D64f101_bert10_FRMB": 47_377_907,
    "rgb_resneXt3D64f101_bert10_FRAB": 52_465_139,
    "rgb_resneXt3D64f101_FRMB_adamw": 44_222_451,
    "rgb_resneXt3D64f101_concatenation": 47_451_339,
    "rgb_resneXt3D64f101_FRMB_NLB_concatenation": 47_347_987,
    "rgb_resneXt3D64f101_FRMB_lstm": 47_578_089,
    "rgb_I3D64f": 12_339_539,
    "rgb_I3D64f_bert2": 24_946_003,
    "rgb_I3D64f_bert2_FRMB": 13_539_427,
    "rgb_I3D64f_bert2_FRAB": 16_396_355,
    "rgb_slowfast64f_50": 33_762_043,
    "rgb_slowfast64f_50_bert10_FRAB_early": 42_252_283,
    "rgb_slowfast64f_50_bert10_FRMB_early": 35_589_371,
    "rgb_slowfast64f_50_bert10_FRAB_late": 41_116_155,
    "rgb_slowfast64f_50_bert10_FRMB_late": 34_556_411,
    "flow_resneXt3D64f101": 47_603_763,
    "flow_resneXt3D64f101_bert10_FRMB": 47_355_955,
    "flow_resneXt3D64f101_bert10_FRAB": 52_443_187,
    "flow_I3D64f": 12_317_587,
    "flow_I3D64f_bert2": 24_924_051,
    "flow_I3D64f_bert2_FRMB": 13_517_475,
    "flow_I3D64f_bert2_FRAB": 16_374_403,
}
