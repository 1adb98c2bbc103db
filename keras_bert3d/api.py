"""The public API of keras_bert3d: re-exports only, no logic. Importing it registers every serializable class
(layers, backbones, models, the recipe's optimiser and metrics) with Keras, so `.keras` files load."""
from keras_bert3d.backbones.backbone import Backbone
from keras_bert3d.backbones.i3d_backbone import I3DBackbone
from keras_bert3d.backbones.r2plus1d_backbone import R2Plus1DBackbone
from keras_bert3d.backbones.resnext3d_backbone import ResNeXt3DBackbone
from keras_bert3d.backbones.slowfast_backbone import SlowFastBackbone
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.layers.reference_layer_norm import ReferenceLayerNorm
from keras_bert3d.layers.temporal_tokens import TemporalTokens
from keras_bert3d.models.builder import build_model, get_preset, list_models
from keras_bert3d.models.clip_augmenter import ClipAugmenter
from keras_bert3d.models.video_classifier import VideoClassifier
from keras_bert3d.models.video_preprocessor import VideoPreprocessor
from keras_bert3d.serving.timeline import predict_timeline
from keras_bert3d.optimizers import ReferenceAdamW, ReferenceSGD

__all__ = [
    "Backbone", "I3DBackbone", "R2Plus1DBackbone", "ResNeXt3DBackbone", "SlowFastBackbone",
    "BERTPooling", "ReferenceLayerNorm", "TemporalTokens", "ClipAugmenter", "VideoClassifier", "VideoPreprocessor",
    "build_model", "get_preset", "list_models", "predict_timeline", "ReferenceAdamW", "ReferenceSGD",
]
