"""ClipAugmenter: per-clip window resize, flip and normalisation equal to the host transforms bit for bit
(windows down- and up-scaled, exactly S x S, flipped, 3- and 2-channel), config and .keras round trips, and
the training wrapper `augmented_model` sharing the classifier's weights."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import run_saving_test, run_serialization_test
from keras_bert3d.data import transforms
from keras_bert3d.models.clip_augmenter import ClipAugmenter, augmented_model, unwrap

SIZE = 16
PREP = dict(crop_size=SIZE, scale=1 / 255, mean=[0.43216, 0.394666, 0.37645], std=[0.22803, 0.22145, 0.216989])
FLOW = dict(PREP, mean=[0.5, 0.5], std=[0.226, 0.226])


def random_windows(rng, count, height, width):
    """``count`` windows in ``height x width`` frames (8 up to the whole frame), first two exactly S x S."""
    rows = []
    for k in range(count):
        h, w = (SIZE, SIZE) if k < 2 else (int(rng.integers(8, height + 1)), int(rng.integers(8, width + 1)))
        rows.append([int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w, k % 2])
    return np.asarray(rows, np.int32)


def host_clips(frames, windows, prep):
    """What the host pipeline does to each clip: crop, `transforms.resize`, flip, `transforms.normalize`."""
    out = []
    for clip, (y, x, h, w, flip) in zip(frames, windows):
        clip = transforms.resize(tf.constant(clip[:, y:y + h, x:x + w]), [SIZE, SIZE])
        out.append(transforms.normalize(tf.reverse(clip, [2]) if flip else clip, prep).numpy())
    return np.stack(out)


@pytest.mark.parametrize("prep,height,width", [(PREP, 28, 36), (FLOW, 20, 20)])
def test_equals_the_host_transforms_bit_for_bit(prep, height, width):
    rng = np.random.default_rng(height)
    frames = rng.integers(0, 256, (24, 2, height, width, len(prep["mean"])), np.uint8)
    windows = random_windows(rng, len(frames), height, width)
    layer = ClipAugmenter.from_preprocessing(prep)
    out = np.asarray(layer({"frames": frames, "windows": windows}))
    assert out.dtype == np.float32 and out.shape == (len(frames), 2, SIZE, SIZE, len(prep["mean"]))
    assert np.array_equal(out, host_clips(frames, windows, prep))
    # an S x S window is its pixels (the centre crop), flipped when asked
    y, x = windows[0, :2]
    assert np.array_equal(out[0], transforms.normalize(tf.constant(frames[0, :, y:y + SIZE, x:x + SIZE]), prep))
    compiled = tf.function(lambda f, w: layer({"frames": f, "windows": w}), jit_compile=True)
    assert np.array_equal(compiled(frames, windows).numpy(), out)  # XLA (CPU) too


def test_arguments_config_and_keras_file(tmp_path):
    layer = ClipAugmenter(**PREP, name="augment")
    run_serialization_test(layer)
    assert layer.get_config()["mean"] == PREP["mean"] and layer.dtype_policy.name == "float32"
    frames = keras.Input((2, None, None, 3), dtype="uint8", name="frames")
    windows = keras.Input((5,), dtype="int32", name="windows")
    model = keras.Model({"frames": frames, "windows": windows}, layer({"frames": frames, "windows": windows}))
    rng = np.random.default_rng(1)
    inputs = {"frames": rng.integers(0, 256, (3, 2, 20, 24, 3), np.uint8), "windows": random_windows(rng, 3, 20, 24)}
    run_saving_test(model, inputs, tmp_path, atol=0)
    for kwargs, match in [(dict(crop_size=0), "crop_size=0"), (dict(std=[0.2, 0.0, 0.2]), "std"),
                          (dict(mean=[0.5, 0.5]), "mean")]:
        with pytest.raises(ValueError, match=match):
            ClipAugmenter(**dict(PREP, **kwargs))


def test_augmented_model_shares_the_classifier():
    from models.tiny_presets import TINY_R2PLUS1D
    from keras_bert3d.models.builder import build_model

    classifier = build_model("rgb_r2plus1d_32f_34", 3, **dict(TINY_R2PLUS1D, num_frames=4))
    model = augmented_model(classifier)
    assert unwrap(model) is classifier and unwrap(classifier) is classifier
    assert len(model.weights) == len(classifier.weights)
    size = classifier.preprocessing["crop_size"]
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 4, size + 8, size + 8, 3), np.uint8)
    windows = np.asarray([[8, 0, size, size, 0], [2, 3, size + 4, size + 2, 1]], np.int32)
    clips = ClipAugmenter.from_preprocessing(classifier.preprocessing)({"frames": frames, "windows": windows})
    np.testing.assert_allclose(np.asarray(model({"frames": frames, "windows": windows}, training=False)),
                               np.asarray(classifier(clips, training=False)), atol=1e-6)
