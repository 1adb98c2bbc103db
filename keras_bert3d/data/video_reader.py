"""Decoding frames from video files with PyAV: probe a file, read the frames a clip needs.

`read_frames` seeks to the keyframe before the first frame a clip needs and decodes forward only
to the last one, so a 32-frame clip from a long video costs about one GOP plus the clip. Every call
opens its own container, so `tf.data` may call it from many threads at once.

Frame ``i`` (0-based) is the ``i``-th frame in presentation order, as a frame extractor numbers them: the
timestamps of every packet are read once per file (demuxing only, cached) and sorted, so a variable or NTSC
frame rate, a stream that starts at a non-zero timestamp and B-frames give the same frames as a constant-rate
copy of the video. A rotation flag in the container (a phone's portrait video) is applied: frames come out
upright, and `probe` reports the upright size.

Every failure is a `VideoDecodeError` (a ``ValueError``) whose message names the file and the reason:
missing, empty, not a video, no video stream, truncated, too few frames. A file that breaks mid-stream
(corrupt packets after good ones, a cut tail) decodes up to the damage; the error of a clip that needs
frames past it says where the damage is and carries ``decodable`` (the frames before it), so a caller may
use that part instead (`keras_bert3d.data.pipeline` does when it holds a clip).
"""
import collections
import os
import threading
import typing

import numpy as np

# Called as ``_frame_hook(path, frame_index)`` for every frame the decoder outputs; tests set it
# to count decoded frames. None in normal use.
_frame_hook = None


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


class _Table(typing.NamedTuple):
    pts: typing.Optional[np.ndarray]  # sorted presentation timestamps of the packets; None: some carry none
    rotation: int  # the container's display rotation, degrees counterclockwise (a multiple of 90)


_TABLES = collections.OrderedDict()  # (path, size, mtime) -> _Table, the most recent last
_TABLES_LOCK = threading.Lock()
MAX_TABLES = 4096  # files whose tables are kept (a 2-hour video's table is ~1.4 MB)


def _rotation(frame):
    rotation = int(round(getattr(frame, "rotation", 0) or 0))
    return rotation % 360 if rotation % 90 == 0 else 0


def _frame_table(path):
    """The sorted packet timestamps and the rotation of ``path``'s video stream (demuxed once; only its first
    packet is decoded, for the rotation); cached per file, size and modification time."""
    av = _import_av()
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _TABLES_LOCK:
        if key in _TABLES:
            _TABLES.move_to_end(key)
            return _TABLES[key]
    container, stream = _open(path)
    pts, rotation, complete = [], None, True
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                complete = False
            pts.append(stamp)
            if rotation is None:
                try:
                    rotation = next((_rotation(f) for f in packet.decode()), None)
                except av.error.FFmpegError:
                    rotation = 0
    except av.error.FFmpegError:
        pass  # a cut or corrupt file: the packets before the damage
    finally:
        container.close()
    table = _Table(np.sort(np.asarray(pts, np.int64)) if complete and pts else None, rotation or 0)
    with _TABLES_LOCK:
        _TABLES[key] = table
        while len(_TABLES) > MAX_TABLES:
            _TABLES.popitem(last=False)
    return table


def _packets_end(pts, listed):
    """The first frame whose packet could not be read, when fewer packets than the ``listed`` frame count were:
    the first gap in the timestamps (a corrupt chunk the demuxer skipped), else the last packet read (a cut
    tail: that packet is likely cut short too). None when nothing is missing."""
    if pts is None or not listed or len(pts) >= listed:
        return None
    steps = np.diff(pts)
    if len(steps):
        gaps = np.nonzero(steps > 1.5 * np.median(steps))[0]
        if len(gaps):
            return int(gaps[0]) + 1
    return max(len(pts) - 1, 0)


def probe(path):
    """Reads the container's metadata: `VideoInfo(num_frames, fps, height, width)`.

    The frame count comes from the container's index (``nb_frames``); when the container does not
    store it (e.g. Matroska/WebM), the video packets are counted without decoding them. Height and
    width are the upright frame's (a rotation flag of 90 or 270 degrees swaps them).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video or has no video stream/frames.
    """
    container, stream = _open(path)
    try:
        num_frames, ctx = stream.frames, stream.codec_context
        size, fps = (int(ctx.height), int(ctx.width)), _fps(stream)
    finally:
        container.close()
    table = _frame_table(os.fspath(path))
    if not num_frames:
        num_frames = len(table.pts) if table.pts is not None else 0
    if not num_frames:
        raise VideoDecodeError(path, "has no video frames")
    if table.rotation in (90, 270):
        size = size[::-1]
    return VideoInfo(int(num_frames), fps, *size)


class _Clock:
    """Maps presentation timestamps of one stream to 0-based frame indices (presentation order) and back.

    From the sorted packet timestamps (`_frame_table`) when every packet carries one; otherwise (and past the
    packets that could be read) from the stream's start and frame rate."""

    def __init__(self, stream, table=None):
        self.time_base = float(stream.time_base)
        self.fps = _fps(stream)
        self.table = table if table is not None and len(table) else None
        self.start = int(self.table[0]) if self.table is not None else (stream.start_time or 0)

    def index(self, pts):
        table = self.table
        if table is None:
            return int(round((pts - self.start) * self.time_base * self.fps))
        i = int(np.searchsorted(table, pts))
        if i >= len(table):
            return len(table) - 1 + int(round((pts - table[-1]) * self.time_base * self.fps))
        if i > 0 and pts - table[i - 1] < table[i] - pts:
            i -= 1
        return i

    def pts(self, index):
        table = self.table
        if table is None:
            return self.start + int(index / self.fps / self.time_base)
        if index < len(table):
            return int(table[index])
        return int(table[-1]) + int((index - len(table) + 1) / self.fps / self.time_base)


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


def _decoded(container, stream, clock, first, path, damage=None):
    """Yields (index, frame) in presentation order from the keyframe at or before frame ``first``.

    Decodes from the start (counting frames when they carry no timestamps) when seeking fails or
    its first frame lies past ``first``. A decode error after some frames ends the stream (the
    readable part of a damaged file) and is recorded in ``damage`` (a list, when given); before any
    frame it is a `VideoDecodeError`."""
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
                    yield from _decoded(container, stream, clock, 0, path, damage)
                    return
                position = index
                if _frame_hook is not None:
                    _frame_hook(path, position)
                yield position, frame
    except av.error.FFmpegError as err:
        if position < 0:
            raise VideoDecodeError(path, f"truncated or corrupt (cannot decode: {err})") from None
        if damage is not None:
            damage.append((position + 1, str(err)))


def _upright(frame, width, height, rotation):
    # threads=1: no swscale thread pool (PyAV 19 starts one per conversion by default). A pool's state copied
    # into a forked worker (keras_bert3d.data.parallel) deadlocks there, and tf.data already decodes in parallel.
    array = frame.to_ndarray(format="rgb24", width=width, height=height, threads=1)
    return np.ascontiguousarray(np.rot90(array, rotation // 90)) if rotation else array


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
        table = _frame_table(path)
        end = _packets_end(table.pts, known)  # frames from here on have no (complete) packet
        clock = _Clock(stream, table.pts)
        found, damage = {}, []
        seen = -1
        try:
            for position, frame in _decoded(container, stream, clock, first, path, damage):
                if end is not None and position >= end:
                    break
                seen = max(seen, position)
                if position in wanted and position not in found:
                    found[position] = _upright(frame, width, height, table.rotation)
                if position >= last:
                    break
        except av.error.FFmpegError as err:
            raise VideoDecodeError(path, f"truncated or corrupt (cannot decode: {err})", seen + 1) from None
        missing = sorted(wanted - found.keys())
        if missing:
            stops = ([end] if end is not None else []) + [at for at, _ in damage]
            if stops and min(stops) <= missing[-1]:
                stop = min(stops)
                lists = f" of the {known} it lists" if known else ""
                detail = f" ({damage[0][1]})" if damage and damage[0][0] == stop else ""
                raise VideoDecodeError(path, f"damaged or cut at frame {stop}{lists}: frames 0-{stop - 1} decode, "
                                             f"the clip needs index {missing[-1]}{detail}", stop)
            if seen < missing[-1]:
                raise VideoDecodeError(path, f"has {seen + 1} frames, clip needs index {missing[-1]}", seen + 1)
            raise VideoDecodeError(path, f"frames {missing[:8]} not found (irregular timestamps)")
        out = np.empty((indices.size, *found[indices[0]].shape), np.uint8)
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
        table = _frame_table(os.fspath(path))
        end = _packets_end(table.pts, stream.frames)
        for position, _ in _decoded(container, stream, _Clock(stream, table.pts), 0, os.fspath(path)):
            if end is not None and position >= end:
                break
            last = max(last, position)
        if last < 0:
            raise VideoDecodeError(path, "has no decodable frames")
        return last + 1
    finally:
        container.close()


class StreamedFrame(typing.NamedTuple):
    """One frame of `stream_frames`: its 0-based index, its time in seconds after the first frame, RGB pixels."""

    index: int
    time_s: float
    pixels: np.ndarray  # uint8 (H, W, 3), upright


def stream_frames(path, damage=None):
    """Decodes the whole video once, in presentation order, holding one frame at a time (memory does not grow
    with the video's length): yields `StreamedFrame`s.

    A file that breaks mid-stream ends at the damage; ``damage`` (a list, when given) then receives
    ``(frame, reason)``. Raises `VideoDecodeError` when not even the first frame decodes.
    """
    path = os.fspath(path)
    table = _frame_table(path)
    container, stream = _open(path)
    try:
        stream.codec_context.thread_type = "AUTO"  # one file, decoded once: let FFmpeg use the cores
        height, width = stream.codec_context.height, stream.codec_context.width
        end = _packets_end(table.pts, stream.frames)
        time_base, origin = float(stream.time_base), None
        clock = _Clock(stream, table.pts)
        for position, frame in _decoded(container, stream, clock, 0, path, damage):
            if end is not None and position >= end:
                if damage is not None:
                    damage.append((end, f"no complete packet for frame {end} of the {stream.frames} it lists"))
                break
            stamp = frame.pts if frame.pts is not None else clock.pts(position)
            origin = stamp if origin is None else origin
            yield StreamedFrame(position, (stamp - origin) * time_base, _upright(frame, width, height, table.rotation))
    finally:
        container.close()
