"""Scan a dataset for videos (or frame folders) that will not decode, before a training run meets them.

Each video is probed (container metadata) and its first and last frames are decoded, which finds
missing, empty, not-a-video, truncated and too-short files; ``deep=True`` decodes every frame.
Frame folders (the reference layout) are checked for their frame count and JPEG headers.
Files are checked in parallel threads (PyAV releases the GIL while decoding).
"""
import concurrent.futures
import os

from keras_bert3d.data import frame_folders
from keras_bert3d.data.parallel import skipped_reason
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.video_container import is_video_file
from keras_bert3d.data.video_reader import VideoDecodeError, count_decodable_frames, probe, read_frames
from keras_bert3d.validation import check_positive_int

JPEG_MAGIC = b"\xff\xd8"


def find_videos(root):
    """Every video file under ``root`` (by extension: `VIDEO_EXTENSIONS`), sorted."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"not a folder: {root}")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(folder, f) for f in sorted(files) if is_video_file(f)]
    return found


def read_index_json(path):
    """``(path, label or None)`` for each entry of an index JSON file (`bert3d index --json`: a list of objects
    with ``path`` and optionally ``label``; or an object holding that list as ``records`` or ``videos``)."""
    import json

    with open(path, encoding="utf-8") as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not an index JSON file ({err})") from None
    if isinstance(entries, dict):
        entries = entries.get("records", entries.get("videos"))
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "path" in e for e in entries):
        raise ValueError(f"{path}: expected a JSON list of objects with a 'path' (bert3d index --json)")
    return [(e["path"], e.get("label")) for e in entries]


def read_path_list(list_file, root=None):
    """Paths from a text file, one a line; a trailing integer column (a label, as in UCF101's
    trainlist) is dropped; relative paths resolve against ``root`` (default: the file's folder)."""
    list_file = os.fspath(list_file)
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"list file not found: {list_file}")
    root = os.path.dirname(os.path.abspath(list_file)) if root is None else os.fspath(root)
    paths = []
    with open(list_file, encoding="utf-8-sig") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            while len(parts) > 1 and parts[-1].lstrip("-").isdigit():
                parts.pop()
            paths.append(os.path.join(root, " ".join(parts)))
    return paths


def _check_frames(record, min_frames):
    folder = record.path
    try:
        names = os.listdir(folder) if os.path.isdir(folder) else []
        modality = "rgb" if any(n.startswith(frame_folders.RGB_PREFIX) for n in names) else "flow"
        count = frame_folders.count_frames(folder, modality)
        if record.num_frames is not None and count < record.num_frames:
            return f"has {count} {modality} frames, the index says {record.num_frames}"
        if min_frames and count < min_frames:
            return f"too short: has {count} frames, fewer than min_frames={min_frames}"
        for pair in frame_folders.frame_files(folder, [0, count - 1], modality, num_frames=count):
            for path in (pair,) if modality == "rgb" else pair:
                if not os.path.isfile(path):
                    return f"frame file {os.path.basename(path)} is missing"
                with open(path, "rb") as f:
                    if f.read(2) != JPEG_MAGIC:
                        return f"frame file {os.path.basename(path)} is empty or not a JPEG"
    except VideoDecodeError as err:
        return err.reason
    return None


def _parse_clock(text):
    """Seconds from a Matroska ``DURATION`` tag (``HH:MM:SS.fraction``), or None."""
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _frames_by_duration(path):
    """The frame count the stored duration implies, where the container stores no frame count
    (Matroska, WebM: `probe` then counts packets, which a truncated file has fewer of); else None.
    Uses the video track's duration tag, or the file's duration when the video is its only stream."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        if stream.frames or not stream.average_rate:
            return None
        seconds = _parse_clock(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
        if seconds is None and len(container.streams) == 1 and container.duration:
            seconds = container.duration / av.time_base
        return None if seconds is None else int(round(seconds * float(stream.average_rate)))


def check_one(record, min_frames=None, deep=False):
    """The reason ``record`` (a path or a `VideoRecord`) will not decode, or None when it is fine."""
    if not isinstance(record, VideoRecord):
        record = VideoRecord(os.fspath(record), -1, "")
    if os.path.isdir(record.path):
        return _check_frames(record, min_frames)
    try:
        num_frames = probe(record.path).num_frames
        if deep:
            decoded = count_decodable_frames(record.path)
            if decoded < num_frames:
                return f"truncated: the container lists {num_frames} frames, {decoded} decode"
            num_frames = decoded
        else:
            try:
                read_frames(record.path, [0, num_frames - 1])
            except VideoDecodeError as err:
                return f"truncated: the container lists {num_frames} frames; {err.reason}"
        listed = _frames_by_duration(record.path)
        if listed and num_frames < listed - 2:
            return f"truncated: its duration implies {listed} frames, {num_frames} are present"
        if min_frames and num_frames < min_frames:
            return f"too short: has {num_frames} frames, fewer than min_frames={min_frames}"
    except VideoDecodeError as err:
        return err.reason
    except MemoryError:
        raise
    except Exception as err:  # anything else FFmpeg/PyAV raises on a broken file
        return f"cannot decode ({type(err).__name__}: {err})"
    return None


def _checked(item, min_frames, deep):
    """`check_one`, with anything else a frame folder's files raise (a permission error...) as the reason."""
    try:
        return check_one(item, min_frames, deep)
    except Exception as err:  # MemoryError is raised again
        return skipped_reason(err)


def check_videos(paths_or_index, min_frames=None, workers=None, deep=False):
    """Checks every video of an index (or a list of paths / `VideoRecord`s / frame folders).

    Args:
        paths_or_index: a `VideoIndex` (its ``missing`` entries are reported as missing), or paths.
        min_frames: report videos with fewer frames (e.g. the clip length) as too short.
        workers: threads (default: the number of CPU cores).
        deep: decode every frame instead of the first and the last.

    Returns:
        ``{"checked": n, "bad": [{"path": ..., "reason": ...}, ...]}`` in input order.
    """
    check_positive_int("min_frames", min_frames, optional=True)
    if isinstance(paths_or_index, (str, os.PathLike)):
        raise ValueError(f"check_videos takes a VideoIndex or a list of paths; received the single path "
                         f"{os.fspath(paths_or_index)!r} (use find_videos(root) or read_path_list(file))")
    items = list(paths_or_index)
    missing = list(paths_or_index.missing) if isinstance(paths_or_index, VideoIndex) else []
    workers = check_positive_int("workers", workers or os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(lambda item: _checked(item, min_frames, deep), items))
    bad = [{"path": os.fspath(m), "reason": "missing (listed by the index, not on disk)"} for m in missing]
    for item, reason in zip(items, reasons):
        if reason is not None:
            bad.append({"path": item.path if isinstance(item, VideoRecord) else os.fspath(item), "reason": reason})
    return {"checked": len(items) + len(missing), "bad": bad}
