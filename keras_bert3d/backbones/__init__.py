"""Backbones: 3D CNNs from a clip (B, T, H, W, C) to feature maps, on one small base."""
from keras_bert3d.backbones.backbone import Backbone
# In this order the families register their presets (keras_bert3d.presets; `list_models`).
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.backbones.resnext3d_backbone import ResNeXt3DBackbone
from keras_bert3d.backbones.i3d_backbone import I3DBackbone
from keras_bert3d.backbones.slowfast_backbone import SlowFastBackbone

__all__ = ["Backbone", "I3DBackbone", "R2Plus1DBackbone", "ResNeXt3DBackbone", "SlowFastBackbone"]
