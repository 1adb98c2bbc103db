"""ClipAugmenter: the train/val crop, flip and normalisation of the input pipeline, run on the accelerator.

The host pipeline (`keras_bert3d.data.pipeline.make_dataset(augment="device")`) decodes and resizes the frames,
draws each clip's crop window and flip as the host path draws them, and hands over uint8 frames plus a small
``windows`` tensor; this layer, the first of the training step, does the rest with the same arithmetic as the
host path, so a batch is bit for bit the batch of ``augment="host"``:

- the window ``[y, x, h, w]`` of each clip is resized to ``S x S`` with the float32 operations of TensorFlow's
  ``ResizeBilinear`` kernel with half-pixel centres (what ``tf.image.resize(method="bilinear",
  antialias=False)`` runs in `keras_bert3d.data.transforms.resize`): ``scale = h / S``, ``in = (o + 0.5) *
  scale - 0.5``, ``lower = max(floor(in), 0)``, ``upper = min(ceil(in), h - 1)``, ``lerp = in - floor(in)``;
  ``top = tl + (tr - tl) * x_lerp``, ``bottom = bl + (br - bl) * x_lerp``, ``top + (bottom - top) * y_lerp``;
  rounded half to even and clipped to 0..255 (the host resize returns uint8). The windows differ per clip, so
  the resize is gathers at per-clip indices, with static shapes. A window of ``S x S`` gives its pixels exactly;
- the flip (``flip = 1``) reverses the width axis (it reverses the column indices and weights, the same values);
- normalisation is `keras_bert3d.models.video_preprocessor.normalize` evaluated once per integer pixel value on
  float32 NumPy arrays (the host's float32 operations, one rounding each) and looked up per pixel, so no
  compiler can fuse its multiply and subtract into one FMA and change the last bit.

Exactness: checked bit for bit against the host pipeline on CPU with TensorFlow, JAX and PyTorch. A compiler
that fuses the resize's multiply-adds (XLA on a GPU may emit FMAs) can move a value that sits within an ulp
of a rounding boundary to the next integer: then rare pixels differ by 1 before normalisation.
"""
import keras
import numpy as np
from keras import ops

from keras_bert3d.models.video_preprocessor import normalize
from keras_bert3d.validation import check_positive_int

WINDOW_FIELDS = ("y", "x", "h", "w", "flip")  # the columns of ``windows``


def _axis(start, length, size, flip=None):
    """Per clip, the ``size`` source indices ``lower``, ``upper`` (int32, in the frame) and weights of a resize
    of ``[start, start + length)`` to ``size`` (TF's half-pixel ``compute_interpolation_weights``); reversed
    along the output axis where ``flip``."""
    scale = ops.cast(length, "float32") / np.float32(size)  # (B,)
    out = ops.cast(ops.arange(size), "float32") + np.float32(0.5)  # (S,)
    position = out[None, :] * scale[:, None] - np.float32(0.5)
    floor = ops.floor(position)
    lower = ops.maximum(ops.cast(floor, "int32"), 0)
    upper = ops.minimum(ops.cast(ops.ceil(position), "int32"), (length - 1)[:, None])
    lerp = position - floor
    if flip is not None:
        flipped = flip[:, None] > 0
        lower, upper, lerp = (ops.where(flipped, ops.flip(v, axis=1), v) for v in (lower, upper, lerp))
    return lower + start[:, None], upper + start[:, None], lerp


def _take(x, index, axis):
    """``x[b, ..., index[b, i], ...]`` along ``axis`` (2 = rows, 3 = columns) of ``(B, T, H, W, C)``."""
    shape = ops.shape(x)
    expand = (slice(None), None, slice(None), None, None) if axis == 2 else (slice(None), None, None, slice(None), None)
    target = [shape[0], shape[1], shape[2], shape[3], shape[4]]
    target[axis] = ops.shape(index)[1]
    return ops.take_along_axis(x, ops.broadcast_to(index[expand], target), axis=axis)


@keras.saving.register_keras_serializable(package="keras_bert3d")
class ClipAugmenter(keras.layers.Layer):
    """``{"frames": uint8 (B, T, H, W, C), "windows": int32 (B, 5)}`` -> float32 ``(B, T, S, S, C)`` normalised.

    Each row of ``windows`` is ``[y, x, h, w, flip]``: the crop window in that clip's frames (inside them) and
    1 to flip it left-right. See the module docstring for the arithmetic (the host pipeline's, exactly).

    Args:
        crop_size: the side ``S`` of the output (the backbone's ``image_size``).
        scale, mean, std: the normalisation ``(x * scale - mean) / std`` per channel (a preset's
            ``preprocessing``; `from_preprocessing`).
    """

    def __init__(self, crop_size, scale, mean, std, **kwargs):
        kwargs.setdefault("dtype", "float32")  # normalised clips stay float32 under mixed precision
        super().__init__(**kwargs)
        self.crop_size = check_positive_int("crop_size", crop_size)
        self.scale = float(scale)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        if len(self.mean) != len(self.std) or not self.mean or min(self.std) <= 0:
            raise ValueError(f"`mean` and `std` need one value per channel and std > 0; received mean={mean}, "
                             f"std={std}")
        # normalize() on every integer pixel value, float32 NumPy (the host's float32 operations)
        pixels = np.arange(256, dtype=np.float32)[:, None]
        table = normalize(pixels, np.float32(self.scale), np.asarray(self.mean, np.float32),
                          np.asarray(self.std, np.float32))
        self._table = np.ascontiguousarray(table.astype(np.float32).reshape(-1))  # index: pixel * C + channel

    @classmethod
    def from_preprocessing(cls, preprocessing, **kwargs):
        """From a preset's ``preprocessing`` dict (``crop_size``, ``scale``, ``mean``, ``std``)."""
        return cls(preprocessing["crop_size"], preprocessing["scale"], preprocessing["mean"], preprocessing["std"],
                   **kwargs)

    def resize(self, frames, windows):
        """The windows resized to ``S x S`` and flipped, rounded: float32 integer values 0..255."""
        windows = ops.cast(windows, "int32")
        y, x, h, w, flip = (windows[:, i] for i in range(len(WINDOW_FIELDS)))
        size = self.crop_size
        top_row, bottom_row, y_lerp = _axis(y, h, size)
        left, right, x_lerp = _axis(x, w, size, flip)
        top, bottom = _take(frames, top_row, 2), _take(frames, bottom_row, 2)
        tl, tr = (ops.cast(_take(top, i, 3), "float32") for i in (left, right))
        bl, br = (ops.cast(_take(bottom, i, 3), "float32") for i in (left, right))
        x_lerp = x_lerp[:, None, None, :, None]
        y_lerp = y_lerp[:, None, :, None, None]
        upper = tl + (tr - tl) * x_lerp
        lower = bl + (br - bl) * x_lerp
        out = upper + (lower - upper) * y_lerp
        return ops.clip(ops.round(out), 0.0, 255.0)

    def call(self, inputs):
        frames, windows = inputs["frames"], inputs["windows"]
        pixels = ops.cast(self.resize(frames, windows), "int32")
        channels = len(self.mean)
        index = pixels * channels + ops.arange(channels, dtype="int32")
        return ops.take(ops.convert_to_tensor(self._table, "float32"), index)

    def compute_output_shape(self, input_shape):
        frames = input_shape["frames"]
        return (frames[0], frames[1], self.crop_size, self.crop_size, frames[-1])

    def compute_output_spec(self, inputs):
        frames = inputs["frames"]
        return keras.KerasTensor(self.compute_output_shape({"frames": frames.shape}), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(crop_size=self.crop_size, scale=self.scale, mean=list(self.mean), std=list(self.std))
        return config


def augmented_model(classifier, name="augmented_classifier"):
    """The training model of ``augment="device"``: ``{"frames", "windows"}`` -> `ClipAugmenter` (from
    ``classifier.preprocessing``) -> ``classifier`` (the same layer: shared weights). Frames of any size (the
    train and val boxes differ). Save, export and evaluate ``classifier`` itself (`unwrap`)."""
    prep = classifier.preprocessing
    frames = keras.Input((prep["num_frames"], None, None, len(prep["mean"])), dtype="uint8", name="frames")
    windows = keras.Input((len(WINDOW_FIELDS),), dtype="int32", name="windows")
    inputs = {"frames": frames, "windows": windows}
    clips = ClipAugmenter.from_preprocessing(prep, name="clip_augmenter")(inputs)
    return keras.Model(inputs, classifier(clips), name=name)


def unwrap(model):
    """The classifier inside an `augmented_model`; any other model as it is."""
    layers = getattr(model, "layers", [])
    if len(layers) >= 2 and isinstance(layers[-2], ClipAugmenter):
        return layers[-1]
    return model
