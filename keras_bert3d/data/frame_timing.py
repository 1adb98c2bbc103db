"""Which frame is which in a video file: frame ``i`` (0-based) is the ``i``-th frame in presentation order.

The timestamps of every packet are read once per file (demuxing only, cached) and sorted, so a variable or NTSC
frame rate, a stream that starts at a non-zero timestamp and B-frames give the same frames as a constant-rate copy
of the video. The rotation flag of the container (a phone's portrait video) is read with them. `probe` reports the
frame count, rate and upright size; `Clock` maps timestamps to frame indices and back.
"""
import collections
import os
import threading
import typing

import numpy as np

from keras_bert3d.data.video_container import VideoDecodeError, VideoInfo, import_av, open_video, stream_fps


class FrameTable(typing.NamedTuple):
    """What `frame_table` reads from a file's packets."""

    pts: typing.Optional[np.ndarray]  # sorted presentation timestamps of the packets; None: some carry none
    rotation: int  # the container's display rotation, degrees counterclockwise (a multiple of 90)


_TABLES = collections.OrderedDict()  # (path, size, mtime) -> (FrameTable or (start, step, count, rotation), bytes)
_TABLES_LOCK = threading.Lock()
_TABLE_BYTES = [0]  # what the cached tables hold, about
MAX_TABLE_BYTES = 128 << 20  # the cache's budget: ~230 000 constant-rate files, or ~90 irregular 2-hour videos
_ENTRY_BYTES = 576  # a cache entry's own cost (key with a Kinetics path, tuples, dict slot), measured
# Called as ``_demux_hook(path)`` for every packet-timestamp pass over a file; tests set it to count the passes.
_demux_hook = None


def _rotation(frame):
    rotation = int(round(getattr(frame, "rotation", 0) or 0))
    return rotation % 360 if rotation % 90 == 0 else 0


def _pack(table):
    """What the cache keeps of ``table``: ``(start, step, count, rotation)`` when its timestamps are evenly spaced,
    else the table; and its size in bytes."""
    pts = table.pts
    if pts is not None and len(pts) > 1:
        step = int(pts[1] - pts[0])
        if step > 0 and (np.diff(pts) == step).all():
            return (int(pts[0]), step, len(pts), table.rotation), _ENTRY_BYTES
    return table, _ENTRY_BYTES + (pts.nbytes if pts is not None else 0)


def _unpack(stored):
    if isinstance(stored, FrameTable):
        return stored
    start, step, count, rotation = stored
    return FrameTable(start + step * np.arange(count, dtype=np.int64), rotation)


def frame_table(path, opened=None):
    """The sorted packet timestamps and the rotation of ``path``'s video stream (demuxed once; only its first
    packet is decoded, for the rotation); cached per file, size and modification time (`MAX_TABLE_BYTES`).

    ``opened``: ``(container, stream)`` of ``path`` already open (its decoder not yet used), to demux instead of
    opening the file again; it is then left at its start (an ``FFmpegError`` if it cannot seek back there)."""
    av = import_av()
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _TABLES_LOCK:
        if key in _TABLES:
            _TABLES.move_to_end(key)
            return _unpack(_TABLES[key][0])
    if _demux_hook is not None:
        _demux_hook(path)
    container, stream = opened or open_video(path)
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
        if opened is None:
            container.close()
    table = FrameTable(np.sort(np.asarray(pts, np.int64)) if complete and pts else None, rotation or 0)
    stored, size = _pack(table)
    with _TABLES_LOCK:
        if key not in _TABLES:
            _TABLES[key] = stored, size
            _TABLE_BYTES[0] += size
        while _TABLES and _TABLE_BYTES[0] > MAX_TABLE_BYTES:
            _TABLE_BYTES[0] -= _TABLES.popitem(last=False)[1][1]
    if opened is not None:
        container.seek(0)  # also empties the decoder
    return table


def open_with_table(path):
    """``(container, stream, frame_table(path))`` for a reader, its decoder single-threaded (parallelism comes from
    concurrent calls); a table not cached yet is read from this container: the file is opened once."""
    container, stream = open_video(path)
    try:
        stream.codec_context.thread_count = 1
        return container, stream, frame_table(path, (container, stream))
    except BaseException as err:
        container.close()
        if not isinstance(err, import_av().error.FFmpegError):
            raise
    return open_with_table(path)  # it could not seek back to the start; the table is cached now


def frame_count(stream, table):
    """The number of frames: the container's (``nb_frames``), else the packets counted in ``table``; 0 if neither."""
    return int(stream.frames) or (len(table.pts) if table.pts is not None else 0)


def packets_end(pts, listed):
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
    container, stream, table = open_with_table(os.fspath(path))
    try:
        ctx = stream.codec_context
        size, fps = (int(ctx.height), int(ctx.width)), stream_fps(stream)
        num_frames = frame_count(stream, table)
    finally:
        container.close()
    if not num_frames:
        raise VideoDecodeError(path, "has no video frames")
    if table.rotation in (90, 270):
        size = size[::-1]
    return VideoInfo(int(num_frames), fps, *size)


class Clock:
    """Maps presentation timestamps of one stream to 0-based frame indices (presentation order) and back.

    From the sorted packet timestamps (`frame_table`) when every packet carries one; otherwise (and past the
    packets that could be read) from the stream's start and frame rate."""

    def __init__(self, stream, table=None):
        self.time_base = float(stream.time_base)
        self.fps = stream_fps(stream)
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

