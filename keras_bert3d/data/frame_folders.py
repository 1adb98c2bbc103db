"""Folders of extracted frames in the reference's layout (REFERENCE.md 5.11).

One folder per video, files numbered from 1:
- RGB: ``img_00001.jpg``, ``img_00002.jpg``, ...
- flow: ``flow_x_00001`` / ``flow_y_00001`` pairs (grayscale JPEGs), ending in ``.jpg`` (UCF101) or
  with no extension (HMDB51); the ending is detected per folder.

Indices here are 0-based, like everywhere else in ``keras_bert3d.data``: index ``i`` is file number
``i + 1``. Problems raise `VideoDecodeError` (a ``ValueError`` naming the folder and the reason), the
error a pipeline counts and skips for a bad video.
"""
import os
import re

from keras_bert3d.data.video_container import VideoDecodeError, check_frame_indices
from keras_bert3d.validation import check_choice

RGB_PREFIX = "img_"
FLOW_PREFIXES = ("flow_x_", "flow_y_")
# The frame files of each modality (of `keras_bert3d.models.video_preprocessor.MODALITIES`): the rule of their
# names (the number is the frame's) and how an error shows it.
FRAME_LAYOUTS = {"rgb": (re.compile(r"^img_(\d{5,})\.jpg$"), "img_NNNNN.jpg"),
                 "flow": (re.compile(r"^flow_x_(\d{5,})(?:\.jpg)?$"), "flow_x_NNNNN[.jpg]")}


def check_modality(modality):
    """``modality`` when frame folders have a layout for it (``"rgb"``, ``"flow"``), else a ValueError."""
    return check_choice("modality", modality, tuple(FRAME_LAYOUTS))


def _check_folder(folder):
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        reason = "not a frame folder (a file)" if os.path.exists(folder) else "missing (no such frame folder)"
        raise VideoDecodeError(folder, reason)
    return folder


def flow_extension(folder):
    """``".jpg"`` (UCF101) or ``""`` (HMDB51): how this folder's flow files end."""
    folder = _check_folder(folder)
    for ext in (".jpg", ""):
        if os.path.isfile(os.path.join(folder, f"flow_x_00001{ext}")):
            return ext
    for name in sorted(os.listdir(folder)):  # a folder whose first frame is gone: look at any file
        match = FRAME_LAYOUTS["flow"][0].match(name)
        if match:
            return ".jpg" if name.endswith(".jpg") else ""
    raise VideoDecodeError(folder, f"has no flow frames ({FRAME_LAYOUTS['flow'][1]})")


def file_templates(folder, modality="rgb"):
    """printf-style path templates of the frame files, numbered from 1: ``(".../img_%05d.jpg",)``
    for RGB, ``(".../flow_x_%05d<ext>", ".../flow_y_%05d<ext>")`` for flow. A ``%`` in the folder's path is
    escaped (``%%``), so ``template % number`` gives the file whatever the folder is called."""
    folder = _check_folder(folder)
    escaped = folder.replace("%", "%%")
    if check_modality(modality) == "rgb":
        return (os.path.join(escaped, RGB_PREFIX + "%05d.jpg"),)
    ext = flow_extension(folder)
    return tuple(os.path.join(escaped, prefix + "%05d" + ext) for prefix in FLOW_PREFIXES)


def count_frames(folder, modality="rgb"):
    """The number of frames in a folder: ``img_*.jpg`` files (RGB), ``flow_x_*`` files (flow, as the
    reference counts them). Raises `VideoDecodeError` when the folder is missing or has none."""
    folder = _check_folder(folder)
    pattern, shown = FRAME_LAYOUTS[check_modality(modality)]
    count = sum(1 for name in os.listdir(folder) if pattern.match(name))
    if not count:
        raise VideoDecodeError(folder, f"has no {modality} frames ({shown})")
    return count


def frame_files(folder, indices, modality="rgb", num_frames=None):
    """The files of the frames at 0-based ``indices`` (any order, repeats allowed).

    Args:
        folder: the video's frame folder.
        indices: 0-based frame indices; index ``i`` is file number ``i + 1``.
        modality: ``"rgb"`` -> a list of paths; ``"flow"`` -> a list of ``(flow_x, flow_y)`` pairs.
        num_frames: the folder's frame count when known (split files give it); indices must be below
            it. Otherwise the files of the largest index are checked to exist (one stat, no listing).

    Raises:
        ValueError: a negative index or an unknown modality.
        VideoDecodeError: the folder is missing or has fewer frames than ``max(indices) + 1``.
    """
    templates = file_templates(folder, modality)
    import numpy as np  # here: `bert3d index` imports this module for its layouts and stays without NumPy

    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not indices.size:
        return []
    check_frame_indices(indices)
    last = int(indices.max())
    if num_frames is not None and last >= num_frames:
        raise VideoDecodeError(folder, f"has {num_frames} frames, clip needs index {last}")
    if num_frames is None and not all(os.path.isfile(t % (last + 1)) for t in templates):
        raise VideoDecodeError(folder, f"has {count_frames(folder, modality)} frames, clip needs index {last} "
                                       f"({os.path.basename(templates[0] % (last + 1))} is missing)")
    paths = [tuple(t % (i + 1) for t in templates) for i in indices.tolist()]
    return [p[0] for p in paths] if modality == "rgb" else paths
