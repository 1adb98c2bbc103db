"""VideoPreprocessor: the one implementation of the resize / crop / normalise rules, equal to the tf.data
transforms op for op, serialized with the classifier, and the classifier's normalised path unchanged."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import random_clip, run_saving_test
from keras_bert3d.data import transforms
from keras_bert3d.models.builder import build_model, get_preset
from keras_bert3d.models.video_preprocessor import VideoPreprocessor, check_preprocessing, crop_offsets

PREP = dict(modality="rgb", num_frames=4, frame_size=[20, 27], crop_size=16, scale=1 / 255,
            mean=[0.43216, 0.394666, 0.37645], std=[0.22803, 0.22145, 0.216989])


def _frames(batch=2, frames=4, height=31, width=45, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, frames, height, width, 3)).astype("uint8")


def test_equals_the_pipeline_transforms_op_for_op():
    clips = _frames()
    layer = VideoPreprocessor(**PREP)
    expected = np.stack([transforms.normalize(transforms.center_crop(transforms.resize(tf.constant(c), [20, 27]), 16),
                                              PREP) for c in clips])
    np.testing.assert_array_equal(np.asarray(layer(clips)), expected)
    seen = np.asarray(layer.resize_and_crop(clips))
    assert seen.dtype == np.uint8 and seen.shape == (2, 4, 16, 16, 3)
    # The centre rule rounds half to even: (27 - 16) / 2 = 5.5 -> 6, (20 - 16) / 2 = 2.
    assert crop_offsets([20, 27], 16) == (2, 6) and crop_offsets([20, 25], 16) == (2, 4)


def test_given_crop_and_float_input():
    clips = _frames()
    layer = VideoPreprocessor(**PREP, crop=[0, 0])
    resized = np.stack([transforms.resize(tf.constant(c), [20, 27]).numpy() for c in clips])
    np.testing.assert_array_equal(np.asarray(layer.resize_and_crop(clips)), resized[:, :, :16, :16])
    with pytest.raises(ValueError, match="outside"):
        VideoPreprocessor(**PREP, crop=[5, 0])


@pytest.mark.parametrize("change,match", [({"frame_size": [12, 27]}, "frame_size"), ({"mean": [0.5, 0.5]}, "mean"),
                                          ({"modality": "depth"}, "modality"), ({"std": [1, 0, 1]}, "std")])
def test_one_size_and_channel_check(change, match):
    with pytest.raises(ValueError, match=match):
        check_preprocessing(dict(PREP, **change))
    with pytest.raises(ValueError, match=match):
        VideoPreprocessor(**dict(PREP, **change))


def test_serializes_with_the_classifier_and_keeps_the_normalised_path(tmp_path):
    name = "rgb_r2plus1d_32f_34_bert10"
    model = build_model(name, 3, num_frames=4, image_size=16, frame_size=[20, 27], stage_blocks=[1, 1, 1, 1],
                        stage_filters=[4, 4, 8, 8], stem_filters=[3, 4], num_heads=2)
    assert isinstance(model.preprocessor, VideoPreprocessor)
    assert model.preprocessing == dict(get_preset(name)["preprocessing"], num_frames=4, crop_size=16,
                                       frame_size=[20, 27])
    config = model.get_config()
    json.dumps(config)
    assert config["preprocessor"]["config"]["frame_size"] == [20, 27] and "preprocessing" not in config
    clips = _frames()
    expected = np.asarray(model(np.asarray(model.preprocess(clips))))
    restored = run_saving_test(model, random_clip(2, 4, 16), tmp_path)  # normalised input, unchanged
    assert restored.preprocessor.get_config() == model.preprocessor.get_config()
    np.testing.assert_allclose(np.asarray(restored.predict_frames(clips, verbose=0)), expected, atol=1e-5)


def test_old_preprocessing_dict_builds_the_same_layer():
    name = "rgb_r2plus1d_32f_34_bert10"
    model = build_model(name, 3, num_frames=4, image_size=16, frame_size=[20, 27], stage_blocks=[1, 1, 1, 1],
                        stage_filters=[4, 4, 8, 8], stem_filters=[3, 4], num_heads=2)
    config = model.get_config()
    config["preprocessing"] = model.preprocessing  # what files written before the preprocessor carried
    del config["preprocessor"]
    again = model.__class__.from_config(config)
    assert again.preprocessing == model.preprocessing
    with pytest.raises(ValueError, match="disagrees"):
        model.__class__(model.backbone, 3, preprocessor=VideoPreprocessor(**PREP),
                        preprocessing=dict(PREP, crop_size=12))
    assert keras.saving.get_registered_object("keras_bert3d>VideoPreprocessor") is VideoPreprocessor
