"""SlowFast-R50 presets (the reference's ``rgb_slowfast64f_50*``): data only, registered by
slowfast_backbone.py."""
from keras_bert3d.presets.registry import LARGE, make_preset

RGB = {"scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}


def _slowfast(reduction=None, fusion=None):
    classifier = {"pooling": "tgap" if fusion is None else "bert", "dropout": 0.8}  # fusion: the backbone's
    return make_preset("SlowFastBackbone", {"depth": 50, "feature_reduction": reduction, "fusion": fusion},
                       classifier, 64, LARGE, RGB, "rgb")


backbone_presets = {
    "rgb_slowfast64f_50": _slowfast(),
    "rgb_slowfast64f_50_bert10_FRAB_early": _slowfast("frab", "early"),
    "rgb_slowfast64f_50_bert10_FRMB_early": _slowfast("frmb", "early"),
    "rgb_slowfast64f_50_bert10_FRAB_late": _slowfast("frab", "late"),
    "rgb_slowfast64f_50_bert10_FRMB_late": _slowfast("frmb", "late"),
}

# REFERENCE.md section 7 (51 classes; the "used" count, without the unused head).
reference_params_51 = {
    "rgb_slowfast64f_50": 33_762_043,
    "rgb_slowfast64f_50_bert10_FRAB_early": 42_252_283,
    "rgb_slowfast64f_50_bert10_FRMB_early": 35_589_371,
    "rgb_slowfast64f_50_bert10_FRAB_late": 41_116_155,
    "rgb_slowfast64f_50_bert10_FRMB_late": 34_556_411,
}
