"""I3D presets (the reference's ``*_I3D64f*``): data only, registered by i3d_backbone.py."""
from keras_bert3d.presets.registry import LARGE, make_preset

RGB = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
FLOW = {"scale": 1 / 255, "mean": [0.5, 0.5], "std": [0.5, 0.5]}


def _i3d(modality, reduction=None, pooling="bert"):
    norm = RGB if modality == "rgb" else FLOW
    if pooling == "tgap":
        classifier = {"pooling": "tgap", "dropout": 0.7 if modality == "flow" else 0.8}
    else:
        classifier = {"pooling": "bert", "dropout": 0.8, "l2_normalize_tokens": True, "bert_initializer": "bert2"}
    return make_preset("I3DBackbone", {"feature_reduction": reduction}, classifier, 64, LARGE, norm, modality)


backbone_presets = {
    "rgb_I3D64f": _i3d("rgb", pooling="tgap"),
    "rgb_I3D64f_bert2": _i3d("rgb"),
    "rgb_I3D64f_bert2_FRMB": _i3d("rgb", "frmb"),
    "rgb_I3D64f_bert2_FRAB": _i3d("rgb", "frab"),
    "flow_I3D64f": _i3d("flow", pooling="tgap"),
    "flow_I3D64f_bert2": _i3d("flow"),
    "flow_I3D64f_bert2_FRMB": _i3d("flow", "frmb"),
    "flow_I3D64f_bert2_FRAB": _i3d("flow", "frab"),
}

# REFERENCE.md section 7 (51 classes).
reference_params_51 = {
    "rgb_I3D64f": 12_339_539,
    "rgb_I3D64f_bert2": 24_946_003,
    "rgb_I3D64f_bert2_FRMB": 13_539_427,
    "rgb_I3D64f_bert2_FRAB": 16_396_355,
    "flow_I3D64f": 12_317_587,
    "flow_I3D64f_bert2": 24_924_051,
    "flow_I3D64f_bert2_FRMB": 13_517_475,
    "flow_I3D64f_bert2_FRAB": 16_374_403,
}
