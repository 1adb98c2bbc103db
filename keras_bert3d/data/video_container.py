"""Opening a video file with PyAV: the file kinds it reads, its errors, the container's first video stream.

Every failure is a `VideoDecodeError` (a ``ValueError``) whose message names the file and the reason:
missing, empty, not a video, no video stream, truncated. `keras_bert3d.data.video_reader` decodes the frames.
"""
import os
import typing

# The file endings taken as videos wherever a folder is listed (indexes, `bert3d check-videos`, `bert3d flow`).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv")
# The largest frame decoded (8K UHD, 7680x4320 pixels): a bigger one is refused before it is decoded, with an error
# naming the file, so one hostile or mislabelled file cannot take the memory of a whole job. Override it per call
# (``max_pixels=``), for a process with the environment variable below, or by assigning this constant.
MAX_FRAME_PIXELS = 7680 * 4320
MAX_FRAME_PIXELS_ENV = "BERT3D_MAX_FRAME_PIXELS"


def is_video_file(name):
    """True when the file name ends in one of `VIDEO_EXTENSIONS` (any case)."""
    return name.lower().endswith(VIDEO_EXTENSIONS)


def check_frame_indices(indices):
    """0-based frame ``indices`` (a NumPy array) must be >= 0; a ValueError echoing them otherwise."""
    if indices.size and indices.min() < 0:
        raise ValueError(f"frame indices must be >= 0; received {indices.tolist()}")
    return indices


class VideoDecodeError(ValueError):
    """A video that cannot give the frames asked for; the message names the file and the reason."""

    def __init__(self, path, reason, decodable=None):
        self.path = str(path)
        self.reason = reason
        self.decodable = decodable  # frames that decode before the damage, when known
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # survives pickling (worker processes report it to the parent)
        return type(self), (self.path, self.reason, self.decodable)


class VideoInfo(typing.NamedTuple):
    """What `probe` finds in the container: frame count, frame rate and frame size."""

    num_frames: int
    fps: float
    height: int
    width: int


def import_av():
    """The ``av`` module (PyAV), or an ImportError that says how to install it."""
    try:
        import av
    except ImportError as err:  # pragma: no cover - PyAV is a dependency of the data package
        raise ImportError("decoding videos needs PyAV: pip install av") from err
    return av


_SIGNATURES = ((4, b"ftyp", "MP4/MOV"), (0, b"RIFF", "AVI"), (0, b"\x1aE\xdf\xa3", "Matroska/WebM"),
               (0, b"FLV", "FLV"), (0, b"\x00\x00\x01\xba", "MPEG-PS"), (0, b"OggS", "Ogg"))


def _container_kind(path):
    """The container a file's first bytes announce (so a cut file is told from a non-video), or None."""
    with open(path, "rb") as f:
        head = f.read(12)
    for offset, magic, kind in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return kind
    return None


def frame_pixel_cap(max_pixels=None):
    """The pixel cap in force: ``max_pixels`` when given, else ``$BERT3D_MAX_FRAME_PIXELS``, else `MAX_FRAME_PIXELS`."""
    if max_pixels is None:
        max_pixels = os.environ.get(MAX_FRAME_PIXELS_ENV) or MAX_FRAME_PIXELS
    try:
        max_pixels = int(max_pixels)
    except ValueError:
        max_pixels = 0
    if max_pixels < 1:
        raise ValueError(f"the frame pixel cap must be a positive int (${MAX_FRAME_PIXELS_ENV} or max_pixels=); "
                         f"received {max_pixels!r}")
    return max_pixels


def check_frame_pixels(path, width, height, max_pixels=None):
    """A `VideoDecodeError` naming ``path`` when ``width x height`` frames exceed the pixel cap (`frame_pixel_cap`)."""
    cap = frame_pixel_cap(max_pixels)
    if int(width) * int(height) > cap:
        raise VideoDecodeError(path, f"frames of {width}x{height} pixels are over the pixel cap of {cap} "
                                     f"(8K is {MAX_FRAME_PIXELS}; raise it with ${MAX_FRAME_PIXELS_ENV})")


def open_video(path, max_pixels=None):
    """Opens ``path`` and returns (container, its first video stream), or raises VideoDecodeError (also for frames
    over the pixel cap, `check_frame_pixels`, before any is decoded)."""
    av = import_av()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(path, "missing (no such file)")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "not a video (a directory)")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    try:
        container = av.open(path, "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        detail = getattr(err, "strerror", None) or str(err)
        kind = _container_kind(path)
        if kind:
            raise VideoDecodeError(path, f"truncated or corrupt {kind} (FFmpeg cannot open it: {detail})") from None
        raise VideoDecodeError(path, f"not a video (FFmpeg cannot open it: {detail})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream in the file")
    stream = container.streams.video[0]
    if not stream.codec_context.width or not stream.codec_context.height:
        container.close()
        raise VideoDecodeError(path, "not a video (its video stream has no frame size)")
    try:
        check_frame_pixels(path, stream.codec_context.width, stream.codec_context.height, max_pixels)
    except VideoDecodeError:
        container.close()
        raise
    return container, stream


def stream_fps(stream):
    """The stream's frame rate: its average, else guessed, else base rate; 25 when it states none."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 25.0

