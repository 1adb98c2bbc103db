"""Layers: BERT pooling and its norm, the blocks the backbones are built from, the ablation heads."""
from keras_bert3d.layers.batch_normalization import BatchNormalization
from keras_bert3d.layers.bert_pooling import BERTPooling
from keras_bert3d.layers.bottleneck3d import Bottleneck3D
from keras_bert3d.layers.channel_major_flatten import ChannelMajorFlatten
from keras_bert3d.layers.conv2plus1d import Conv2Plus1D
from keras_bert3d.layers.fast_to_slow_fusion import FastToSlowFusion
from keras_bert3d.layers.inception_module import InceptionModule
from keras_bert3d.layers.lstm_pooling import LSTMPooling
from keras_bert3d.layers.max_pooling3d import MaxPooling3D
from keras_bert3d.layers.non_local_block import NonLocalBlock
from keras_bert3d.layers.r2plus1d_block import R2Plus1DBlock
from keras_bert3d.layers.reference_layer_norm import ReferenceLayerNorm
from keras_bert3d.layers.temporal_subsample import TemporalSubsample
from keras_bert3d.layers.temporal_tokens import TemporalTokens
from keras_bert3d.layers.unit3d import Unit3D

__all__ = [
    "BatchNormalization", "BERTPooling", "Bottleneck3D", "ChannelMajorFlatten", "Conv2Plus1D", "FastToSlowFusion",
    "InceptionModule", "LSTMPooling", "MaxPooling3D", "NonLocalBlock", "R2Plus1DBlock", "ReferenceLayerNorm", "TemporalSubsample",
    "TemporalTokens", "Unit3D",
]
