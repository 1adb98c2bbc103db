"""Models: VideoClassifier and the preset builder."""
from keras_bert3d.models.builder import build_model, get_preset, list_models
from keras_bert3d.models.describe import count_parameters, describe
from keras_bert3d.models.video_classifier import VideoClassifier
from keras_bert3d.models.video_preprocessor import VideoPreprocessor

__all__ = ["VideoClassifier", "VideoPreprocessor", "build_model", "count_parameters", "describe", "get_preset", "list_models"]
