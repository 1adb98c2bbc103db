"""Decoding frames from video files with PyAV: probe a file, read the frames a clip needs.

`read_frames` seeks to the keyframe before the first frame a clip needs and decodes forward only to the last
one (about one GOP plus the clip), not decoding the lead-in frames nothing refers to (most B-frames;
``skip_frame``: every other frame stays as it was). Each call opens the file once (a sampler may choose the
frames from the count found there), so `tf.data` may call it from many threads at once. Frames go to RGB once,
into the array returned, at the video's size: the resize to the model's frame size stays
`keras_bert3d.data.transforms.resize`'s exact bilinear rule (FFmpeg's swscale shrinks with a wider filter and
other chroma siting: 3-4.5 grey levels off on average, up to 134).

Frame ``i`` (0-based) is the ``i``-th frame in presentation order, as a frame extractor numbers them
(`keras_bert3d.data.frame_timing`, which also has `probe`). A rotation flag (a phone's portrait video) is
applied: frames come out upright. Opening a file and its errors: `keras_bert3d.data.video_container`.

Every failure is a `VideoDecodeError` (a ``ValueError``) naming the file and the reason: missing, empty, not
a video, no video stream, truncated, too few frames. A file that breaks mid-stream (corrupt packets, a cut
tail) decodes up to the damage; the error of a clip that needs frames past it says where and carries
``decodable`` (the frames before it), so a caller may use that part (`keras_bert3d.data.pipeline` does).
"""
import collections
import itertools
import os
import typing

import numpy as np

from keras_bert3d.data.frame_timing import Clock, frame_count, frame_table, open_with_table, packets_end, probe
from keras_bert3d.data.video_container import (VideoDecodeError, VideoInfo, check_frame_indices, check_frame_pixels,
                                              import_av, open_video)

# Called as ``_frame_hook(path, frame_index)`` for every frame the decoder outputs; tests set it
# to count decoded frames. None in normal use.
_frame_hook = None
# Decoders whose ``skip_frame="NONREF"`` leaves out only frames no other frame uses (H.264's nal_ref_idc 0, the
# B-frames of MPEG-1/2/4, VP8's frames that refresh no reference); the lead-in of other codecs (HEVC's sub-layer
# non-reference pictures may still be referenced by a higher sub-layer) is decoded in full.
LEAD_IN_SKIP_CODECS = ("h264", "mpeg4", "mpeg1video", "mpeg2video", "vp8")


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
            return itertools.chain([head], packets)
        # Keyframes are indexed by decode time: the one found is shown after `target`; go earlier.
        offset, step = offset - step, step * 2
    return None


def _decoded(container, stream, clock, first, path, damage=None, lead_in=False):
    """Yields (index, frame) in presentation order from the keyframe at or before frame ``first``.

    Decodes from the start (counting frames when they carry no timestamps) when seeking fails or
    its first frame lies past ``first``. A decode error after some frames ends the stream (the
    readable part of a damaged file) and is recorded in ``damage`` (a list, when given); before any
    frame it is a `VideoDecodeError`. ``lead_in=True``: the packets before frame ``first`` (by their
    timestamps) that no other frame refers to are not decoded, nor yielded."""
    av = import_av()
    packets = _seek_packets(container, stream, clock, first) if first > 0 else None
    from_start = packets is None
    if from_start and first > 0:
        container.seek(0)
    if from_start:
        packets = container.demux(stream)
    position, context, skipped, skipping = -1, stream.codec_context, False, False
    lead_in = lead_in and context.name in LEAD_IN_SKIP_CODECS
    try:
        for packet in packets:
            if lead_in:  # no reference frame is skipped, so the frames decoded are the same
                skip = packet.pts is not None and clock.index(packet.pts) < first
                if skip != skipping:
                    context.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
                skipped |= skip
            for frame in packet.decode():
                if frame.pts is not None:
                    index = clock.index(frame.pts)
                elif (from_start or position >= 0) and not skipped:
                    index = position + 1
                else:
                    index = None  # no timestamp on the first frame after a seek (or after skipped frames)
                if (not from_start and position < 0 and (index is None or index > first)) or index is None:
                    container.seek(0)
                    context.skip_frame = "DEFAULT"
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


def _upright(frame, width, height, rotation, path=None):
    """The frame as uint8 RGB ``(H, W, 3)`` of the header's size, upright (a rotated view when ``rotation``)."""
    if path is not None and (frame.width != width or frame.height != height):
        check_frame_pixels(path, frame.width, frame.height)  # a stream whose frames grow past its header's size
    # threads=1: no swscale thread pool (PyAV 19 starts one per conversion by default). A pool's state copied
    # into a forked worker (keras_bert3d.data.parallel) deadlocks there, and tf.data already decodes in parallel.
    array = frame.to_ndarray(format="rgb24", width=width, height=height, threads=1)
    return np.rot90(array, rotation // 90) if rotation else array


def _missing_error(path, missing, seen, end, damage, known):
    """The `VideoDecodeError` for frames a clip needs that did not decode (``missing``, sorted)."""
    stops = ([end] if end is not None else []) + [at for at, _ in damage]
    if stops and min(stops) <= missing[-1]:
        stop = min(stops)
        lists = f" of the {known} it lists" if known else ""
        detail = f" ({damage[0][1]})" if damage and damage[0][0] == stop else ""
        return VideoDecodeError(path, f"damaged or cut at frame {stop}{lists}: frames 0-{stop - 1} decode, "
                                      f"the clip needs index {missing[-1]}{detail}", stop)
    if seen < missing[-1]:
        return VideoDecodeError(path, f"has {seen + 1} frames, clip needs index {missing[-1]}", seen + 1)
    return VideoDecodeError(path, f"frames {missing[:8]} not found (irregular timestamps)")


def read_frames(path, indices):
    """Decodes the frames at ``indices`` (0-based, any order, repeats allowed).

    Seeks to the keyframe at or before ``min(indices)`` and decodes forward to ``max(indices)``.
    ``indices`` may also be a function of the video's frame count (`probe`'s ``num_frames``) that returns
    them, so a clip sampler opens the file once.

    Returns:
        uint8 array ``(len(indices), height, width, 3)``, RGB, in the order of ``indices``.

    Raises:
        ValueError: an index is negative.
        VideoDecodeError: the file is missing, empty, not a video, has no video stream, or has fewer
            frames than ``max(indices) + 1`` (its message says how many it has).
    """
    av = import_av()
    path = os.fspath(path)
    choose = indices if callable(indices) else None
    if choose is None:
        indices = check_frame_indices(np.asarray(indices, dtype=np.int64).reshape(-1))
    container, stream, table = open_with_table(path)
    try:
        height, width = stream.codec_context.height, stream.codec_context.width
        known = stream.frames
        if choose is not None:  # the frame count as `probe` gives it
            count = frame_count(stream, table)
            if not count:
                raise VideoDecodeError(path, "has no video frames")
            indices = check_frame_indices(np.asarray(choose(count), np.int64).reshape(-1))
        if not indices.size:
            return np.zeros((0, height, width, 3), np.uint8)
        first, last = int(indices.min()), int(indices.max())
        if known and last >= known:
            raise VideoDecodeError(path, f"has {known} frames, clip needs index {last}")
        end = packets_end(table.pts, known)  # frames from here on have no (complete) packet
        rows = collections.defaultdict(list)  # frame -> the rows of `out` that show it
        for row, index in enumerate(indices.tolist()):
            rows[index].append(row)
        size = (width, height) if table.rotation in (90, 270) else (height, width)
        out, damage, seen = np.empty((indices.size, *size, 3), np.uint8), [], -1
        try:
            for position, frame in _decoded(container, stream, Clock(stream, table.pts), first, path, damage, True):
                if end is not None and position >= end:
                    break
                seen = max(seen, position)
                if position in rows:
                    out[rows.pop(position)] = _upright(frame, width, height, table.rotation, path)
                if position >= last:
                    break
        except av.error.FFmpegError as err:
            raise VideoDecodeError(path, f"truncated or corrupt (cannot decode: {err})", seen + 1) from None
        if rows:
            raise _missing_error(path, sorted(rows), seen, end, damage, known)
        return out
    finally:
        container.close()


def stream_clips(path, clips, transform=None):
    """Decodes the clips ``clips`` (K, T) of 0-based frame indices in one forward pass (from the keyframe at or
    before the first frame any clip needs) and yields ``(k, frames)`` for every clip in order, as soon as its
    last frame has decoded: uint8 ``(T, H, W, 3)`` upright RGB, as `read_frames` gives them.

    A frame is kept only until the last clip that needs it has been yielded, so memory holds about a clip's
    frames whatever the video's length (clips in the order of their frames, as every sampling rule gives them).
    ``transform(pixels) -> array`` (a resize to the model's frame size) runs on each kept frame as it decodes.

    Raises `VideoDecodeError` as `read_frames` does, once the clips before the problem have been yielded.
    """
    av = import_av()
    path = os.fspath(path)
    rows = check_frame_indices(np.asarray(clips, dtype=np.int64))
    if rows.ndim != 2:
        raise ValueError(f"clips must be (K, T) frame indices; received shape {rows.shape}")
    if not rows.size:
        return
    rows = rows.tolist()
    uses = collections.Counter(i for row in rows for i in set(row))  # clips still to yield that need each frame
    first, last = min(uses), max(uses)
    container, stream, table = open_with_table(path)
    try:
        height, width = stream.codec_context.height, stream.codec_context.width
        known = stream.frames
        if known and last >= known:
            raise VideoDecodeError(path, f"has {known} frames, clip needs index {last}")
        end = packets_end(table.pts, known)
        kept, damage, seen, k = {}, [], -1, 0
        try:
            for position, frame in _decoded(container, stream, Clock(stream, table.pts), first, path, damage, True):
                if end is not None and position >= end:
                    break
                seen = max(seen, position)
                if position in uses and position not in kept:
                    pixels = _upright(frame, width, height, table.rotation, path)
                    kept[position] = pixels if transform is None else np.asarray(transform(pixels))
                while k < len(rows) and all(i in kept for i in rows[k]):
                    yield k, np.stack([kept[i] for i in rows[k]])
                    for i in set(rows[k]):
                        uses[i] -= 1
                        if not uses[i]:
                            del uses[i], kept[i]
                    k += 1
                if k == len(rows) or position >= last:
                    break
        except av.error.FFmpegError as err:
            raise VideoDecodeError(path, f"truncated or corrupt (cannot decode: {err})", seen + 1) from None
        if k < len(rows):
            raise _missing_error(path, sorted(i for i in uses if i not in kept), seen, end, damage, known)
    finally:
        container.close()


def count_decodable_frames(path):
    """Decodes the whole video (nothing kept) and returns how many frames decode; for thorough
    checks (`check_videos(..., deep=True)`), slower than `probe`. Raises `VideoDecodeError`."""
    container, stream, table = open_with_table(os.fspath(path))
    try:
        last = -1
        end = packets_end(table.pts, stream.frames)
        for position, _ in _decoded(container, stream, Clock(stream, table.pts), 0, os.fspath(path)):
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
    table = frame_table(path)
    container, stream = open_video(path)
    try:
        stream.codec_context.thread_type = "AUTO"  # one file, decoded once: let FFmpeg use the cores
        height, width = stream.codec_context.height, stream.codec_context.width
        end = packets_end(table.pts, stream.frames)
        time_base, origin = float(stream.time_base), None
        clock = Clock(stream, table.pts)
        for position, frame in _decoded(container, stream, clock, 0, path, damage):
            if end is not None and position >= end:
                if damage is not None:
                    damage.append((end, f"no complete packet for frame {end} of the {stream.frames} it lists"))
                break
            stamp = frame.pts if frame.pts is not None else clock.pts(position)
            origin = stamp if origin is None else origin
            yield StreamedFrame(position, (stamp - origin) * time_base,
                                np.ascontiguousarray(_upright(frame, width, height, table.rotation, path)))
    finally:
        container.close()


__all__ = ["StreamedFrame", "VideoDecodeError", "VideoInfo", "count_decodable_frames", "probe", "read_frames",
           "stream_clips", "stream_frames"]
