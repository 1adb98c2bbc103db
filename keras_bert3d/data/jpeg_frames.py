"""Frames on the host (NumPy, no TensorFlow): bilinear resize, JPEG encode/decode, whole videos in chunks.

Used by the jobs that write frames (`bert3d to-tfrecord`, `bert3d flow`) in worker processes,
which therefore never import TensorFlow.

`resize_bilinear` is the resize rule of `keras_bert3d.models.video_preprocessor` (OpenCV's ``INTER_LINEAR``: the
reference resizes every frame with ``cv2.resize``; REFERENCE.md 5.6; half-pixel centres, edge pixels repeated,
no antialiasing when shrinking), written in NumPy because these workers cannot load Keras: importing the models
would start TensorFlow in every worker. It agrees with `keras_bert3d.data.transforms.resize` to within one grey
level (tests/data/test_transforms.py). JPEG goes through Pillow (a dependency of tensorboard, itself a dependency
of this package).
"""
import io

import numpy as np

from keras_bert3d.validation import check_int_range, check_positive_int, check_positive_ints

DEFAULT_CHUNK = 64


def _axis_weights(in_size, out_size):
    """Source rows (lower, upper) and the upper row's weight for each output row."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    lower = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    weight = (src - lower).astype(np.float32)
    return lower, upper, weight


def resize_bilinear(frames, size):
    """Resizes uint8 frames ``(..., H, W, C)`` to ``size = [height, width]`` (bilinear, as cv2)."""
    frames = np.asarray(frames)
    if frames.ndim < 3:
        raise ValueError(f"frames must be (..., H, W, C); received shape {frames.shape}")
    height, width = check_positive_ints("size", [int(v) for v in size], length=2)
    in_h, in_w = frames.shape[-3], frames.shape[-2]
    if (in_h, in_w) == (height, width):
        return frames
    out = frames.astype(np.float32)
    lower, upper, weight = _axis_weights(in_h, height)
    w = weight[:, None, None]
    out = out[..., lower, :, :] * (1.0 - w) + out[..., upper, :, :] * w
    lower, upper, weight = _axis_weights(in_w, width)
    w = weight[:, None]
    out = out[..., lower, :] * (1.0 - w) + out[..., upper, :] * w
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_jpeg(frame, quality=90):
    """JPEG bytes of one uint8 frame ``(H, W, 3)`` (RGB) or ``(H, W)`` / ``(H, W, 1)`` (grayscale)."""
    from PIL import Image

    check_int_range("quality", int(quality), 1, 100)
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def decode_jpeg(data, grayscale=False):
    """uint8 ``(H, W, 3)`` RGB (or ``(H, W)`` when ``grayscale``) from JPEG ``bytes`` or a file path."""
    from PIL import Image

    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(source) as image:
        return np.asarray(image.convert("L" if grayscale else "RGB"))


def video_chunks(path, chunk=DEFAULT_CHUNK):
    """Yields every frame of a video file as uint8 RGB arrays ``(n <= chunk, H, W, 3)``, in order.

    Memory stays bounded by one chunk whatever the video's length; each chunk is one
    `read_frames` call (a seek to the keyframe before it, then decoding forward).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, truncated ...
    """
    from keras_bert3d.data.video_reader import probe, read_frames

    check_positive_int("chunk", chunk)
    total = probe(path).num_frames
    for start in range(0, total, chunk):
        yield read_frames(path, np.arange(start, min(start + chunk, total)))
