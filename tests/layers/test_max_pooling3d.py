"""MaxPooling3D: Keras' pooling in every dtype but float64, where TensorFlow has no kernel; there the maximum
of the window's strided slices gives Keras' result exactly, and I3D/SlowFast/ResNeXt build under float64."""
import keras
import numpy as np
import pytest

from keras_bert3d.layers import MaxPooling3D

CASES = [((3, 3, 3), (1, 1, 1), "same", (2, 5, 7, 6, 3)), ((1, 3, 3), (1, 2, 2), "valid", (1, 4, 9, 8, 2)),
         ((3, 3, 3), (2, 2, 2), "same", (2, 7, 9, 10, 2)), ((2, 2, 2), (2, 2, 2), "same", (1, 5, 5, 6, 1)),
         ((1, 3, 3), (1, 2, 2), "same", (1, 3, 8, 9, 2))]


@pytest.mark.parametrize("pool, strides, padding, shape", CASES)
def test_float64_equals_keras_pooling(pool, strides, padding, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)  # exact in float64 too
    expected = keras.ops.convert_to_numpy(keras.layers.MaxPooling3D(pool, strides, padding)(x))
    ours = MaxPooling3D(pool, strides, padding, dtype="float64")
    got = keras.ops.convert_to_numpy(ours(x.astype(np.float64)))
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected.astype(np.float64))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(MaxPooling3D(pool, strides, padding)(x)), expected)


def test_config_round_trip_and_the_class_name():
    layer = MaxPooling3D((1, 3, 3), (1, 2, 2), "valid", name="stem_pool")
    clone = MaxPooling3D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and type(clone).__name__ == "MaxPooling3D"


@pytest.mark.parametrize("name", ["rgb_I3D64f_bert2", "rgb_slowfast64f_50_bert10_FRAB_late", "rgb_resneXt3D64f101"])
def test_pooling_backbones_run_in_float64(name):
    from models.tiny_presets import tiny_overrides

    from keras_bert3d.models.builder import build_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        model = build_model(name, 3, **tiny_overrides(name))
        frames, size = model.input_shape[1], model.input_shape[2]
        logits = model(np.random.default_rng(1).standard_normal((1, frames, size, size, 3)))
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(logits.dtype) == "float64" and np.isfinite(np.asarray(logits)).all()
