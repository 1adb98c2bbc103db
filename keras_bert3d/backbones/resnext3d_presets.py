"""ResNeXt-101-3D presets (the reference's ``*_resneXt3D64f101*``): data only, registered by
resnext3d_backbone.py."""
from keras_bert3d.presets.registry import SMALL, make_preset

RGB = {"scale": 1.0, "mean": [114.7748, 107.7354, 99.4750], "std": [1.0, 1.0, 1.0]}
FLOW = {"scale": 1.0, "mean": [127.5, 127.5], "std": [1.0, 1.0]}


def _resnext(modality, reduction=None, pooling="tgap", optimizer="adamw", **classifier):
    norm = RGB if modality == "rgb" else FLOW
    dropout = 0.7 if (modality == "flow" and pooling == "tgap") else 0.8
    return make_preset("ResNeXt3DBackbone", {"depth": 101, "feature_reduction": reduction},
                       {"pooling": pooling, "dropout": dropout, **classifier}, 64, SMALL, norm, modality, optimizer)


backbone_presets = {
    "rgb_resneXt3D64f101": _resnext("rgb", optimizer="sgd"),
    "rgb_resneXt3D64f101_adamw": _resnext("rgb"),
    "rgb_resneXt3D64f101_bert10_FRMB": _resnext("rgb", "frmb", "bert"),
    "rgb_resneXt3D64f101_bert10_FRAB": _resnext("rgb", "frab", "bert"),
    "rgb_resneXt3D64f101_FRMB_adamw": _resnext("rgb", "frmb"),
    "rgb_resneXt3D64f101_concatenation": _resnext("rgb", "frmb", "concat", head_hidden_dim=1550),
    "rgb_resneXt3D64f101_FRMB_NLB_concatenation": _resnext("rgb", "frmb", "nonlocal_concat", head_hidden_dim=1000),
    "rgb_resneXt3D64f101_FRMB_lstm": _resnext("rgb", "frmb", "lstm"),
    "flow_resneXt3D64f101": _resnext("flow", optimizer="sgd"),
    "flow_resneXt3D64f101_bert10_FRMB": _resnext("flow", "frmb", "bert"),
    "flow_resneXt3D64f101_bert10_FRAB": _resnext("flow", "frab", "bert"),
}

# REFERENCE.md section 7 (51 classes).
reference_params_51 = {
    "rgb_resneXt3D64f101": 47_625_715,
    "rgb_resneXt3D64f101_adamw": 47_625_715,
    "rgb_resneXt3D64f101_bert10_FRMB": 47_377_907,
    "rgb_resneXt3D64f101_bert10_FRAB": 52_465_139,
    "rgb_resneXt3D64f101_FRMB_adamw": 44_222_451,
    "rgb_resneXt3D64f101_concatenation": 47_451_339,
    "rgb_resneXt3D64f101_FRMB_NLB_concatenation": 47_347_987,
    "rgb_resneXt3D64f101_FRMB_lstm": 47_578_089,
    "flow_resneXt3D64f101": 47_603_763,
    "flow_resneXt3D64f101_bert10_FRMB": 47_355_955,
    "flow_resneXt3D64f101_bert10_FRAB": 52_443_187,
}
