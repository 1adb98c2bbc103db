"""Backbones: 3D CNNs from a clip (B, T, H, W, C) to feature maps, on one small base.

Layer: imports ``layers``, ``validation``, ``backend`` and ``presets`` (the registry and the preset-folder I/O);
imported by ``models`` and everything above. Each family is a ``<family>_backbone.py`` (the class) and a
``<family>_presets.py`` (its presets, data only), and its backbone module registers those presets with its class,
once. This package imports the four families, in the order ``list_models()`` lists them: holding any backbone class
means every family is registered.
"""
from keras_bert3d.backbones.backbone import Backbone
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.backbones.resnext3d_backbone import ResNeXt3DBackbone
from keras_bert3d.backbones.i3d_backbone import I3DBackbone
from keras_bert3d.backbones.slowfast_backbone import SlowFastBackbone

__all__ = ["Backbone", "I3DBackbone", "R2Plus1DBackbone", "ResNeXt3DBackbone", "SlowFastBackbone"]
