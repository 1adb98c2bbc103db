"""R(2+1)D presets (the reference's ``rgb_r2plus1d_*``): data only, registered by r2plus1d_backbone.py."""
from keras_bert3d.presets.registry import SMALL, make_preset

RGB = {"scale": 1 / 255, "mean": [0.43216, 0.394666, 0.37645], "std": [0.22803, 0.22145, 0.216989]}


def _r2plus1d(frames, pooling):
    return make_preset("R2Plus1DBackbone", {"depth": 34}, {"pooling": pooling, "dropout": 0.8},
                       frames, SMALL, RGB, "rgb")


backbone_presets = {
    "rgb_r2plus1d_32f_34": _r2plus1d(32, "tgap"),
    "rgb_r2plus1d_32f_34_bert10": _r2plus1d(32, "bert"),
    "rgb_r2plus1d_64f_34_bert10": _r2plus1d(64, "bert"),
}

# REFERENCE.md section 7 (51 classes).
reference_params_51 = {
    "rgb_r2plus1d_32f_34": 63_518_138,
    "rgb_r2plus1d_32f_34_bert10": 66_673_594,
    "rgb_r2plus1d_64f_34_bert10": 66_675_642,
}
