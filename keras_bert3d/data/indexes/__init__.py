"""Dataset indexes: (video file or frame folder, 0-based label, class name) for a split and subset.

Every index returns a ``keras_bert3d.data.records.VideoIndex``. Entries listed by the annotations but absent from
disk are left out, collected in ``VideoIndex.missing`` and reported once, up front, by a single
``MissingFilesWarning`` (first few paths and the count); malformed annotation files raise a ValueError naming the
file and line.
"""
import os

from keras_bert3d.data.frame_folders import check_modality
from keras_bert3d.data.indexes._common import MissingFilesWarning, check_choice
from keras_bert3d.data.indexes.folders import class_folder_index, csv_index
from keras_bert3d.data.indexes.hmdb51 import hmdb51_index
from keras_bert3d.data.indexes.kinetics import kinetics_index
from keras_bert3d.data.indexes.reference_frames import reference_frames_index
from keras_bert3d.data.indexes.ucf101 import ucf101_index

DATASETS = ("ucf101", "hmdb51", "kinetics", "frames", "folders", "csv")
_TAKES_CLASSES = ("kinetics", "frames")
_VIDEO_ONLY = ("ucf101", "hmdb51", "kinetics")


def build_index(dataset, root, annotations=None, split=1, subset="train", modality="rgb", classes=None):
    """The index of ``dataset`` under ``root``.

    Args:
        dataset: ``"ucf101"``, ``"hmdb51"``, ``"kinetics"``, ``"frames"`` (the reference's frame folders and split
            files), ``"folders"`` (one folder per class) or ``"csv"`` (a CSV of ``path,label``).
        root: the dataset folder (for ``"csv"`` without ``annotations``: the CSV itself).
        annotations: the annotation folder or file: UCF101 ``ucfTrainTestlist``, HMDB51 split folder, Kinetics CSV
            (or its folder), the reference's split file (or settings folder), or the CSV of ``"csv"`` (whose
            relative paths then resolve against ``root``).
        split: 1, 2 or 3 (UCF101, HMDB51, frames).
        subset: ``"train"`` or ``"test"`` (``"val"`` is the reference's name for the test lists); Kinetics has
            ``"train"``, ``"val"`` and ``"test"``.
        modality: ``"rgb"`` or ``"flow"``; flow comes from frame folders (``"frames"``, ``"folders"``, ``"csv"``).
        classes: the class order for ``"kinetics"`` and ``"frames"`` (a list or a file; see those functions).
    """
    check_choice("dataset", dataset, DATASETS)
    check_modality(modality)
    if classes is not None and dataset not in _TAKES_CLASSES:
        raise ValueError(f"classes is used by the datasets {', '.join(_TAKES_CLASSES)} only; received "
                         f"classes={classes!r} for dataset={dataset!r}")
    if modality == "flow" and dataset in _VIDEO_ONLY:
        raise ValueError(f"dataset={dataset!r} indexes video files, which give rgb; received modality='flow'. "
                         f"Extract flow with `bert3d flow`, then index it with dataset='frames' or 'folders'")
    if dataset == "ucf101":
        return ucf101_index(root, annotations, split=split, subset=subset)
    if dataset == "hmdb51":
        return hmdb51_index(root, annotations, split=split, subset=subset)
    if dataset == "kinetics":
        return kinetics_index(root, annotations, subset=subset, classes=classes)
    if dataset == "frames":
        return reference_frames_index(root, annotations, modality, split=split, subset=subset, classes=classes)
    if dataset == "folders":
        return class_folder_index(root)
    if annotations is not None:
        return csv_index(annotations, root)
    if not os.path.isfile(root):
        raise ValueError(f"dataset='csv' needs a CSV: pass it as root or annotations; received root={root!r}")
    return csv_index(root)


__all__ = [
    "DATASETS", "MissingFilesWarning", "build_index", "class_folder_index", "csv_index", "hmdb51_index",
    "kinetics_index", "reference_frames_index", "ucf101_index",
]
