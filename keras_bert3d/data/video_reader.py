"""Decoding frames from video files with PyAV: probe a file, read the frames a clip needs.

`read_frames` seeks to the keyframe before the first frame a clip needs and decodes forward only
to the last one, so a 32-frame clip from a long video costs about one GOP plus the clip. Every call
opens its own container, so `tf.data` may call it from many threads at once.

Frame ``i`` (0-based) is the frame whose presentation time is ``i / fps`` after the stream's start.
Every failure is a `VideoDecodeError` (a ``ValueError``) whose message names the file and the reason:
missing, empty, not a video, no video stream, truncated, too few frames.
"""
import os
import typing

import numpy as np

# Called as ``_frame_hook(path, frame_index)`` for every frame the decoder outputs; tests set it
# to count decoded frames. None in normal use.
_frame_hook = None


class VideoDecodeError(ValueError):
    """A video that cannot give the frames asked for; the message names the file and the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # survives pickling (worker processes report it to the parent)
        return type(self), (self.path, self.reason)


class VideoInfo(typing.NamedTuple):
    """What `probe` finds in the container: frame count, frame rate and frame size."""

    num_frames: int
    fps: float
    height: int
    width: int


def _import_av():
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


def _open(path):
    """Opens ``path`` and returns (container, its first video stream), or raises VideoDecodeError."""
    av = _import_av()
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
    return container, stream


def _fps(stream):
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 25.0


def _count_packets(container, stream):
    count = 0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
    return count


def probe(path):
    """Reads the container's metadata: `VideoInfo(num_frames, fps, height, width)`.

    The frame count comes from the container's index (``nb_frames``); when the container does not
    store it (e.g. Matroska/WebM), the video packets are counted without decoding them.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video or has no video stream/frames.
    """
    av = _import_av()
    container, stream = _open(path)
    try:
        num_frames = stream.frames
        if not num_frames:
            try:
                num_frames = _count_packets(container, stream)
            except av.error.FFmpegError as err:
                raise VideoDecodeError(path, f"truncated or corrupt (demuxing failed: {err})") from None
        if not num_frames:
            raise VideoDecodeError(path, "has no video frames")
        ctx = stream.codec_context
        return VideoInfo(int(num_frames), _fps(stream), int(ctx.height), int(ctx.width))
    finally:
        container.close()


class _Clock:
    """Maps presentation timestamps of one stream to 0-based frame indices and back."""

    def __init__(self, stream):
        self.time_base = float(stream.time_base)
        self.fps = _fps(stream)
        self.start = stream.start_time or 0

    def index(self, pts):
        return int(round((pts - self.start) * self.time_base * self.fps))

    def pts(self, index):
        return self.start + int(index / self.fps / self.time_base)


def _seek_packets(container, stream, clock, first):
    """Packets from the keyframe at or before frame ``first``, or None when seeking finds none
    (the caller then decodes from the start)."""
    target = clock.pts(first)
    step = max(1, clock.pts(1) - clock.pts(0))
    offset = target
    while offset > clock.start:
        container.seek(offset, stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        head = next((p for p in packets if p.size), None)
        if head is None or head.pts is None:
            return None
        if head.pts <= target:
            return _chain(head, packets)
        # Keyframes are indexed by decode time: the one found is shown after `target`; go earlier.
        offset, step = offset - step, step * 2
    return None


def _chain(head, rest):
    yield head
    yield from rest


def _decoded(container, stream, clock, first, path):
    """Yields (index, frame) in presentation order from the keyframe at or before frame ``first``.

    Decodes from the start (counting frames when they carry no timestamps) when seeking fails or
    its first frame lies past ``first``. A decode error after some frames ends the stream (the
    readable part of a truncated file); before any frame it is a `VideoDecodeError`."""
    av = _import_av()
    packets = _seek_packets(container, stream, clock, first) if first > 0 else None
    from_start = packets is None
    if from_start and first > 0:
        container.seek(0)
    if from_start:
        packets = container.demux(stream)
    position = -1
    try:
        for packet in packets:
            for frame in packet.decode():
                if frame.pts is not None:
                    index = clock.index(frame.pts)
                elif from_start or position >= 0:
                    index = position + 1
                else:
                    index = None  # no timestamp on the first frame after a seek
                if not from_start and position < 0 and (index is None or index > first):
                    container.seek(0)
                    yield from _decoded(container, stream, clock, 0, path)
                    return
                position = index
                if _frame_hook is not None:
                    _frame_hook(path, position)
                yield position, frame
    except av.error.FFmpegError as err:
        if position < 0:
            raise VideoDecodeError(path, f"truncated or corrupt (cannot decode: {err})") from None


def read_frames(path, indices):
    """Decodes the frames at ``indices`` (0-based, any order, repeats allowed).

    Seeks to the keyframe at or before ``min(indices)`` and decodes forward to ``max(indices)``.

    Returns:
        uint8 array ``(len(indices), height, width, 3)``, RGB, in the order of ``indices``.

    Raises:
        ValueError: an index is negative.
        VideoDecodeError: the file is missing, empty, not a video, has no video stream, or has fewer
            frames than ``max(indices) + 1`` (its message says how many it has).
    """
    av = _import_av()
    path = os.fspath(path)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError(f"frame indices must be >= 0; received {indices.tolist()}")
    container, stream = _open(path)
    try:
        height, width = stream.codec_context.height, stream.codec_context.width
        if not indices.size:
            return np.zeros((0, height, width, 3), np.uint8)
        wanted = set(indices.tolist())
        first, last = int(indices.min()), int(indices.max())
        known = stream.frames
        if known and last >= known:
            raise VideoDecodeError(path, f"has {known} frames, clip needs index {last}")
        stream.codec_context.thread_count = 1  # parallelism comes from concurrent calls
        clock = _Clock(stream)
        found = {}
        seen = -1
        try:
            for position, frame in _decoded(container, stream, clock, first, path):
                seen = max(seen, position)
                if position in wanted and position not in found:
                    found[position] = frame.to_ndarray(format="rgb24", width=width, height=height)
                if position >= last:
                    break
        except av.error.FFmpegError as err:
            raise VideoDecodeError(path, f"truncated or corrupt (cannot decode: {err})") from None
        missing = sorted(wanted - found.keys())
        if missing:
            if seen < missing[-1]:
                raise VideoDecodeError(path, f"has {seen + 1} frames, clip needs index {missing[-1]}")
            raise VideoDecodeError(path, f"frames {missing[:8]} not found (irregular timestamps)")
        out = np.empty((indices.size, height, width, 3), np.uint8)
        for row, index in enumerate(indices.tolist()):
            out[row] = found[index]
        return out
    finally:
        container.close()


def count_decodable_frames(path):
    """Decodes the whole video (nothing kept) and returns how many frames decode; for thorough
    checks (`check_videos(..., deep=True)`), slower than `probe`. Raises `VideoDecodeError`."""
    container, stream = _open(path)
    try:
        stream.codec_context.thread_count = 1
        last = -1
        for position, _ in _decoded(container, stream, _Clock(stream), 0, os.fspath(path)):
            last = max(last, position)
        if last < 0:
            raise VideoDecodeError(path, "has no decodable frames")
        return last + 1
    finally:
        container.close()
