"""TV-L1 optical flow from videos into the reference's frame-folder layout (REFERENCE.md 5.11).

For a video of ``n`` frames, `extract_flow` writes ``n - 1`` pairs ``flow_x_%05d.jpg`` /
``flow_y_%05d.jpg`` (1-based; pair ``i`` is the flow from frame ``i`` to frame ``i + 1``) and,
optionally, the ``n`` frames as ``img_%05d.jpg``.

Encoding (the common two-stream convention, as in the denseflow tools the reference's frames come
from): each flow component, in pixels per frame, is clipped to ``[-bound, bound]`` and mapped
linearly to ``0..255``: ``v = round((f + bound) * 255 / (2 * bound))``, saved as a grayscale JPEG.
Zero motion is ~127.5; `flow_from_uint8` inverts it. The pipeline then applies the preset's flow
normalisation (e.g. I3D: ``v / 255``, mean 0.5, std 0.5).

TV-L1 is OpenCV-contrib's ``cv2.optflow.DualTVL1OpticalFlow`` with its default parameters, on
grayscale frames (resized first to ``size`` when given). It is an optional dependency:
``pip install 'keras_bert3d[flow]'`` (opencv-contrib-python-headless).
"""
import os
import shutil

import numpy as np

from keras_bert3d.atomic import atomic_write_text
from keras_bert3d.data import check
from keras_bert3d.data.jpeg_frames import video_chunks
from keras_bert3d.data.parallel import ordered_map
from keras_bert3d.progress import Progress
from keras_bert3d.validation import check_positive_ints, check_positive_number

DEFAULT_BOUND = 20.0
INSTALL_HINT = "pip install 'keras_bert3d[flow]'  (opencv-contrib-python-headless)"


def import_cv2():
    """OpenCV with the contrib ``optflow`` module, or an ImportError that says what to install."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError(f"TV-L1 flow extraction needs OpenCV-contrib: {INSTALL_HINT}") from err
    if not hasattr(cv2, "optflow"):
        raise ImportError("the installed OpenCV has no contrib 'optflow' module (TV-L1); uninstall "
                          f"opencv-python / opencv-python-headless, then {INSTALL_HINT}")
    return cv2


def flow_to_uint8(flow, bound=DEFAULT_BOUND):
    """Flow in pixels -> uint8: clipped to ``[-bound, bound]``, mapped linearly to 0..255."""
    check_positive_number("bound", bound)
    flow = np.clip(np.asarray(flow, np.float32), -bound, bound)
    return np.rint((flow + bound) * (255.0 / (2.0 * bound))).astype(np.uint8)


def flow_from_uint8(image, bound=DEFAULT_BOUND):
    """The inverse of `flow_to_uint8` (up to its 2 * bound / 255 quantisation step)."""
    return np.asarray(image, np.float32) * (2.0 * bound / 255.0) - bound


def _save(cv2, path, image, quality):
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"cannot write {path}")


def extract_flow(video_path, out_folder, bound=DEFAULT_BOUND, size=None, write_rgb=False, jpeg_quality=95):
    """Writes the TV-L1 flow of ``video_path`` into ``out_folder`` (see the module docstring).

    Args:
        video_path: any video PyAV decodes.
        out_folder: created; written as ``<out_folder>.tmp`` and renamed when complete, so an
            existing ``out_folder`` is always complete.
        bound: the clipping bound in pixels per frame (20: the common convention).
        size: ``[height, width]`` to resize frames to first (e.g. ``[256, 340]``); None keeps.
        write_rgb: also write the frames as ``img_%05d.jpg`` (RGB, same size).
        jpeg_quality: 1..100.

    Returns:
        The number of flow pairs written (frames - 1).

    Raises:
        VideoDecodeError: the video cannot be decoded, or has fewer than 2 frames.
    """
    from keras_bert3d.data.video_reader import VideoDecodeError

    cv2 = import_cv2()
    check_positive_number("bound", bound)
    if size is not None:
        check_positive_ints("size", [int(v) for v in size], length=2)
    out_folder = os.fspath(out_folder).rstrip(os.sep)
    tmp = out_folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    previous, count = None, 0
    try:
        for chunk in video_chunks(video_path):
            for rgb in chunk:
                if size is not None:
                    rgb = cv2.resize(rgb, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
                count += 1
                if write_rgb:
                    _save(cv2, os.path.join(tmp, f"img_{count:05d}.jpg"), rgb[..., ::-1], jpeg_quality)
                gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                if previous is not None:
                    flow = tvl1.calc(previous, gray, None)
                    for axis, name in enumerate(("flow_x", "flow_y")):
                        _save(cv2, os.path.join(tmp, f"{name}_{count - 1:05d}.jpg"),
                              flow_to_uint8(flow[..., axis], bound), jpeg_quality)
                previous = gray
        if count < 2:
            raise VideoDecodeError(video_path, f"too few frames for optical flow ({count}; needs 2)")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_folder, ignore_errors=True)
    os.replace(tmp, out_folder)
    return count - 1


def find_videos(root_or_index):
    """``(path, label or None)`` for each video: from an index JSON file (`bert3d index --json`: a
    list of objects with ``path`` and optionally ``label``) or every video file under a folder."""
    source = os.fspath(root_or_index)
    if os.path.isfile(source):
        return check.read_index_json(source)
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source}: no such folder or index file")
    return [(path, None) for path in check.find_videos(source)]


def _folder_name(path):
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def _worker_init():
    import cv2

    cv2.setNumThreads(1)  # one video per process; no nested threads


def _extract_task(task):
    path, out_folder, options = task
    try:
        return {"count": extract_flow(path, out_folder, **options)}
    except (ValueError, OSError) as err:  # VideoDecodeError is a ValueError
        return {"error": str(err)}


def _write_split(out_dir, folders, labels, name, count_fn):
    lines = [f"{folder} {count_fn(folder)} {label}" for folder, label in zip(folders, labels)
             if label is not None and os.path.isdir(os.path.join(out_dir, folder))]
    if lines:
        atomic_write_text(os.path.join(out_dir, name), "\n".join(lines) + "\n")


def extract_flow_dataset(root_or_index, out_dir, workers=None, bound=DEFAULT_BOUND, size=None, write_rgb=False,
                         jpeg_quality=95, progress=True):
    """`extract_flow` for every video of a folder or index, into ``out_dir/<video name>/``.

    Parallel over videos; resumable: a folder that exists is complete (see `extract_flow`) and
    skipped. Videos that fail are listed, not raised. When the index has labels it also writes
    ``flow_split.txt`` (and ``rgb_split.txt`` with ``write_rgb``), lines ``<folder> <frames>
    <label>``: the reference's split-file format, for `reference_frames_index`.

    Returns:
        ``{"written": [folders], "skipped": [folders], "bad": [{"path", "reason"}]}``.
    """
    import_cv2()
    videos = find_videos(root_or_index)
    if not videos:
        raise ValueError(f"no videos found in {root_or_index}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    folders = [_folder_name(path) for path, _ in videos]
    seen = {}
    for (path, _), folder in zip(videos, folders):
        if folder in seen:
            raise ValueError(f"two videos would share the output folder {folder!r}: {seen[folder]} and {path}")
        seen[folder] = path
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    options = {"bound": bound, "size": size, "write_rgb": write_rgb, "jpeg_quality": jpeg_quality}
    todo = [(path, os.path.join(out_dir, folder), options)
            for (path, _), folder in zip(videos, folders) if not os.path.isdir(os.path.join(out_dir, folder))]
    report = {"written": [], "skipped": [f for f in folders if os.path.isdir(os.path.join(out_dir, f))], "bad": []}
    # spawn, not fork: OpenCV's thread pool deadlocks in a child forked from a process that used it.
    with ordered_map(_extract_task, max(1, min(workers, len(todo))), _worker_init, "spawn",
                     skip_errors=True) as run, \
            Progress(len(todo), "flow", enabled=progress) as bar:
        for task, result in zip(todo, run(todo)):
            if "error" in result:
                report["bad"].append({"path": task[0], "reason": result["error"]})
            else:
                report["written"].append(os.path.basename(task[1]))
            bar.update(1)
    labels = [label for _, label in videos]

    def count(prefix):
        return lambda folder: sum(name.startswith(prefix) for name in os.listdir(os.path.join(out_dir, folder)))

    _write_split(out_dir, folders, labels, "flow_split.txt", count("flow_x_"))
    if write_rgb:
        _write_split(out_dir, folders, labels, "rgb_split.txt", count("img_"))
    return report
