"""Models: VideoClassifier (backbone + temporal pooling + head), its preprocessor, the device-side train/val
augmentation (ClipAugmenter), compile recipe and preset builder.

Layer: imports ``backbones``, ``presets`` (the registry and the preset-folder I/O), ``layers``, ``optimizers``,
``validation`` and ``backend``; imported by ``data`` (the pure preprocessing functions of `video_preprocessor`),
``serving``, ``training``, ``convert`` and ``cli``. Knows nothing of files beyond preset folders, of datasets or
of the command line.
"""
from keras_bert3d.models.builder import build_model, get_preset, list_models
from keras_bert3d.models.clip_augmenter import ClipAugmenter
from keras_bert3d.models.describe import count_parameters, describe
from keras_bert3d.models.video_classifier import VideoClassifier
from keras_bert3d.models.video_preprocessor import VideoPreprocessor

__all__ = ["ClipAugmenter", "VideoClassifier", "VideoPreprocessor", "build_model", "count_parameters", "describe",
           "get_preset", "list_models"]
