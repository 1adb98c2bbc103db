"""VideoPreprocessor: raw frames -> the normalised clip a preset's weights expect; the one home of those rules.

The rules (REFERENCE.md 5.6-5.9), written once here and used by the classifier, the export graph, the
clients, ``bert3d predict``/``demo`` and the tf.data transforms:

- `check_preprocessing`: a preprocessing dict is complete, ``frame_size`` is ``[H, W]`` with both sides at
  least ``crop_size``, and ``mean``/``std`` give one value per channel (2 for flow, 3 for RGB);
- resizing: every frame to ``frame_size``, bilinear with half-pixel centres and no antialiasing, rounded
  back to integer pixels in 0..255 (as ``cv2.resize`` returns uint8 frames) before cropping;
- `crop_offsets`: the centre ``crop_size`` window at ``y = round((H - S) / 2)``, ``x = round((W - S) / 2)``
  (Python's round, half to even), or the given ``crop=[y, x]``;
- `normalize`: ``(x * scale - mean) / std`` per channel, float32. Written with operators only, so it is the
  same function on NumPy arrays, tf tensors (the tf.data pipeline) and Keras tensors (the layer).
"""
import keras
from keras import ops

from keras_bert3d.validation import check_choice

PREPROCESSING_KEYS = ("modality", "num_frames", "frame_size", "crop_size", "scale", "mean", "std")
MODALITIES = ("rgb", "flow")


def check_preprocessing(preprocessing):
    """``preprocessing`` with ``frame_size`` as ints, after checking the rules above; a clear error otherwise."""
    missing = set(PREPROCESSING_KEYS) - set(preprocessing or {})
    if missing:
        raise ValueError(f"`preprocessing` lacks {sorted(missing)}; received preprocessing={preprocessing!r} "
                         "(pass preprocessing= for a model built without a preset)")
    frame_size = [int(v) for v in preprocessing["frame_size"]]
    crop_size = int(preprocessing["crop_size"])
    if len(frame_size) != 2 or min(frame_size) < crop_size:
        raise ValueError(f"`frame_size` must be [H, W], both >= crop_size={crop_size}; "
                         f"received frame_size={preprocessing['frame_size']}")
    check_choice("modality", preprocessing["modality"], MODALITIES)
    mean, std = [float(v) for v in preprocessing["mean"]], [float(v) for v in preprocessing["std"]]
    if len(mean) != len(std) or len(mean) != (2 if preprocessing["modality"] == "flow" else 3) or min(std) <= 0:
        raise ValueError(f"`mean` and `std` need one value per channel (3 RGB, 2 flow) and std > 0; received "
                         f"modality={preprocessing['modality']!r}, mean={mean}, std={std}")
    return dict(preprocessing, frame_size=frame_size, crop_size=crop_size, mean=mean, std=std,
                scale=float(preprocessing["scale"]), num_frames=int(preprocessing["num_frames"]))


def crop_offsets(frame_size, crop_size, crop=None):
    """``(y, x)`` of the crop window in a ``frame_size`` frame: ``crop`` if given, else the centre."""
    if crop is not None:
        y, x = (int(v) for v in crop)
        if y < 0 or x < 0 or y + crop_size > frame_size[0] or x + crop_size > frame_size[1]:
            raise ValueError(f"`crop` {[y, x]} puts a {crop_size}x{crop_size} window outside the "
                             f"{frame_size[0]}x{frame_size[1]} frame")
        return y, x
    return round((frame_size[0] - crop_size) / 2), round((frame_size[1] - crop_size) / 2)


def normalize(clip, scale, mean, std):
    """``(clip * scale - mean) / std`` on the last axis; ``clip`` already float32 (operators only)."""
    return (clip * scale - mean) / std


@keras.saving.register_keras_serializable(package="keras_bert3d")
class VideoPreprocessor(keras.layers.Layer):
    """Raw uint8 (or integer-valued float 0-255) clips ``(B, T, H, W, C)`` of any ``H x W`` -> normalised float32
    ``(B, T, S, S, C)``: resize to ``frame_size``, crop ``crop_size`` (centre, or at ``crop=[y, x]``), then
    ``(x * scale - mean) / std``. Its arguments are a preset's ``preprocessing`` dict (``.preprocessing``).

    Args:
        num_frames: frames per clip the model takes (``T``; recorded, not enforced here).
        frame_size: ``[H', W']`` every frame is resized to.
        crop_size: the side ``S`` of the square crop (the backbone's ``image_size``).
        scale, mean, std: the pixel scale and per-channel statistics.
        modality: ``"rgb"`` (3 channels) or ``"flow"`` (2).
        crop: ``None`` (centre) or ``[y, x]``, the crop window's corner in the resized frame.
    """

    def __init__(self, num_frames, frame_size, crop_size, scale, mean, std, modality="rgb", crop=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # normalised clips stay float32 under mixed precision
        super().__init__(**kwargs)
        self._rules = check_preprocessing(dict(modality=modality, num_frames=num_frames, frame_size=frame_size,
                                               crop_size=crop_size, scale=scale, mean=mean, std=std))
        self.crop = None if crop is None else tuple(int(v) for v in crop)
        self.offsets = crop_offsets(self._rules["frame_size"], self._rules["crop_size"], self.crop)

    @property
    def preprocessing(self):
        """The rules as a plain JSON dict (what ``VideoClassifier.preprocessing`` and exports carry)."""
        rules = self._rules
        return {k: list(rules[k]) if isinstance(rules[k], (list, tuple)) else rules[k] for k in PREPROCESSING_KEYS}

    @classmethod
    def from_preprocessing(cls, preprocessing, **kwargs):
        """From a preset's (or an old model's) ``preprocessing`` dict."""
        return cls(**{k: preprocessing[k] for k in PREPROCESSING_KEYS if k in preprocessing}, **kwargs)

    def resize_and_crop(self, clips):
        """The frames as the model sees them before normalisation: ``(B, T, S, S, C)``, uint8 in -> uint8 out."""
        prep = self.preprocessing
        shape = ops.shape(clips)
        frames = ops.reshape(clips, (-1, shape[2], shape[3], shape[4]))
        resized = ops.image.resize(ops.cast(frames, "float32"), prep["frame_size"], interpolation="bilinear",
                                   antialias=False, data_format="channels_last")
        # Raw pixels are integers: the resized frame is rounded as cv2.resize rounds uint8 frames (a layer
        # call hands numpy uint8 over as float32, so the rule cannot hang on the dtype).
        resized = ops.clip(ops.round(resized), 0.0, 255.0)
        if str(clips.dtype) == "uint8":
            resized = ops.cast(resized, "uint8")
        y, x, size = self.offsets[0], self.offsets[1], prep["crop_size"]
        cropped = resized[:, y:y + size, x:x + size, :]
        return ops.reshape(cropped, (shape[0], shape[1], size, size, shape[4]))

    def normalize(self, clips):
        """``(x * scale - mean) / std`` (float32) of clips already at the crop size."""
        prep = self.preprocessing
        return normalize(ops.cast(clips, "float32"), prep["scale"], ops.convert_to_tensor(prep["mean"], "float32"),
                         ops.convert_to_tensor(prep["std"], "float32"))

    def call(self, clips):
        return self.normalize(self.resize_and_crop(clips))

    def compute_output_shape(self, input_shape):
        size = self.preprocessing["crop_size"]
        return (input_shape[0], input_shape[1], size, size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({k: self.preprocessing[k] for k in PREPROCESSING_KEYS})
        config["crop"] = None if self.crop is None else list(self.crop)
        return config
