"""TemporalSubsample: the kept frames are exactly x[:, offset::stride]; static and dynamic shapes; config."""
import keras
import numpy as np
import pytest

from harness import random_clip, run_layer_test, run_saving_test
from keras_bert3d.layers.temporal_subsample import TemporalSubsample


@pytest.mark.parametrize("frames,stride,offset", [(16, 8, 0), (16, 2, 0), (15, 4, 1), (9, 3, 2), (4, 8, 0)])
def test_keeps_every_stride_th_frame(frames, stride, offset):
    x = random_clip(2, frames, 4, 3)
    kept = list(range(offset, frames, stride))
    out = run_layer_test(TemporalSubsample(stride, offset), x, (2, len(kept), 4, 4, 3))
    np.testing.assert_array_equal(np.asarray(out), x[:, kept])


def test_slowfast_sampling_of_a_64_frame_clip():
    x = np.arange(64, dtype="float32").reshape(1, 64, 1, 1, 1)
    slow = np.asarray(TemporalSubsample(8)(x)).ravel()
    fast = np.asarray(TemporalSubsample(2)(x)).ravel()
    np.testing.assert_array_equal(slow, np.arange(0, 64, 8))
    np.testing.assert_array_equal(fast, np.arange(0, 64, 2))


def test_dynamic_frames_stay_dynamic():
    layer = TemporalSubsample(4)
    assert layer.compute_output_shape((None, None, 8, 8, 3)) == (None, None, 8, 8, 3)
    inputs = keras.Input((None, 8, 8, 3))
    assert tuple(layer(inputs).shape) == (None, None, 8, 8, 3)


def test_saving_round_trip(tmp_path):
    inputs = keras.Input((12, 4, 4, 3))
    model = keras.Model(inputs, TemporalSubsample(3, 1, name="sub")(inputs))
    restored = run_saving_test(model, random_clip(1, 12, 4, 3), tmp_path)
    assert restored.get_layer("sub").get_config()["offset"] == 1


@pytest.mark.parametrize("kwargs,match", [
    ({"stride": 0}, "stride=0"), ({"stride": 2.0}, "stride=2.0"), ({"stride": True}, "stride=True"),
    ({"stride": 2, "offset": -1}, "offset=-1"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalSubsample(**kwargs)
