"""The reference's frame folders and split files (REFERENCE.md 5.11), so its users keep the frames they extracted.

Layout: one folder per video, ``ROOT/<folder>/img_%05d.jpg`` (RGB) or ``flow_x_%05d`` / ``flow_y_%05d`` (flow:
``.jpg`` for UCF101, no extension for HMDB51; the frame reader detects which). Split files
``<settings>/{train,val}_{rgb,flow}_split{1,2,3}.txt``, lines ``<folder> <num_frames> <label>`` (0-based labels).
"""
import os

from keras_bert3d.data.frame_folders import check_modality
from keras_bert3d.data.indexes._common import (DiskLookup, check_split_args, find_annotation_dir, locate_base,
                                               malformed, read_class_file, read_lines, report_missing)
from keras_bert3d.data.records import VideoIndex, VideoRecord

CLASS_FILE = "classInd.txt"


def split_file_name(subset, modality, split):
    """The reference's file name: ``train_rgb_split1.txt``; its test lists are called ``val``."""
    return f"{'train' if subset == 'train' else 'val'}_{modality}_split{split}.txt"


def mmaction_file_name(subset, split, dataset="*"):
    """MMAction2's name for the same list: ``ucf101_train_split_1_rawframes.txt``."""
    return f"{dataset}_{'train' if subset == 'train' else 'val'}_split_{split}_rawframes.txt"


def _split_file_in(folder, subset, modality, split):
    """The split file of (subset, modality, split) in ``folder``: the reference's name, else MMAction2's (rgb)."""
    reference = os.path.join(folder, split_file_name(subset, modality, split))
    if os.path.isfile(reference):
        return reference
    if modality == "rgb":
        suffix = mmaction_file_name(subset, split)[1:]
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(suffix))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        if names:
            return os.path.join(folder, names[0])
    return None


def find_split_file(root, subset, modality, split):
    """The split file when none is given: in ``ROOT/settings[/<dataset>]``, ``ROOT``, the reference's
    ``ROOT/../settings/<dataset>`` (``datasets/hmdb51_frames`` -> ``datasets/settings/hmdb51``), else the one
    folder anywhere below ROOT that holds it (several: an error naming them)."""
    dataset = os.path.basename(os.path.abspath(root)).replace("_frames", "").replace("rawframes", "")
    folder = find_annotation_dir(root, None, ("settings", os.path.join("settings", dataset)),
                                 f"{split_file_name(subset, modality, split)} (or MMAction2's "
                                 f"{mmaction_file_name(subset, split)})",
                                 lambda d: _split_file_in(d, subset, modality, split) is not None)
    return _split_file_in(folder, subset, modality, split)


def parse_split_file(path):
    """``[(line number, folder, num_frames, label)]`` from lines ``<folder> <num_frames> <label>``."""
    expected = "'<folder> <num_frames> <label>' with num_frames >= 1 and a 0-based label"
    entries = []
    for number, line in read_lines(path):
        parts = line.split()
        if len(parts) < 3 or not parts[-1].isdigit() or not parts[-2].isdigit() or int(parts[-2]) < 1:
            raise malformed(path, number, line, expected)
        entries.append((number, " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])))
    return entries


def reference_frames_index(root, split_file, modality="rgb", *, split=1, subset="train", classes=None):
    """Index the reference's frame folders from one of its split files.

    Args:
        root: the folder of the per-video frame folders (``datasets/hmdb51_frames``), or a folder above it (the
            reference's ``datasets``, MMAction2's ``data/ucf101`` with ``rawframes/``): the folder holding the
            listed frame folders is found below it.
        split_file: a split file, or the settings folder holding ``{train,val}_{rgb,flow}_split{K}.txt`` (then
            ``split``, ``subset`` and ``modality`` pick the file; MMAction2's ``*_train_split_K_rawframes.txt``
            is read too), or None: found in ``ROOT/settings``, ``ROOT``, ``ROOT/../settings/<dataset>`` or
            anywhere below ROOT (several candidates: an error naming them).
        modality: ``"rgb"`` or ``"flow"``.
        split: 1, 2 or 3 (only used to pick the file in a settings folder).
        subset: ``"train"`` or ``"test"`` (= the reference's ``val`` lists; ``"val"`` is accepted too).
        classes: class names in label order (a list, or a classInd-like file: ``<index> <name>`` lines from 0 or
            1, or one name a line). Default: ``classInd.txt`` next to the split file if there is one, else
            ``class_<label>`` for labels 0..max.

    Returns:
        A ``VideoIndex`` with ``source="frames"``; each record's ``num_frames`` comes from the split file. Listed
        folders not on disk (matched case-insensitively) are left out, listed in ``missing`` and warned about once;
        none on disk is a FileNotFoundError naming the folders looked in.
    """
    check_modality(modality)
    root, split = check_split_args(root, split, subset, "frames")
    if split_file is None:
        split_file = find_split_file(root, subset, modality, split)
    split_file = os.fspath(split_file)
    if os.path.isdir(split_file):
        split_file = (_split_file_in(split_file, subset, modality, split)
                      or os.path.join(split_file, split_file_name(subset, modality, split)))
    entries = parse_split_file(split_file)
    if classes is None:
        default = os.path.join(os.path.dirname(split_file), CLASS_FILE)
        classes = default if os.path.isfile(default) else None
    if classes is None:
        num_classes = 1 + max((label for *_, label in entries), default=-1)
        class_names = [f"class_{i}" for i in range(num_classes)]
    else:
        class_names = list(classes) if isinstance(classes, (list, tuple)) else read_class_file(classes)
    lookup = DiskLookup()

    def find(base, folder):
        path = lookup.resolve(base, folder)
        return path if path is not None and os.path.isdir(path) else None

    base, looked = locate_base(root, [folder for _, folder, _, _ in entries], find, "the listed frame folders")
    records, missing = [], []
    for number, folder, num_frames, label in entries:
        if label >= len(class_names):
            raise ValueError(f"{split_file}, line {number}: label {label} but only {len(class_names)} classes "
                             f"(classes={classes!r})")
        path = find(base, folder)
        if path is None:
            missing.append(os.path.join(base, folder))
        else:
            records.append(VideoRecord(path, label, class_names[label], num_frames))
    report_missing(f"frames {os.path.basename(split_file)}", missing, len(entries), base, looked)
    return VideoIndex(records, class_names, missing, source="frames", root=os.path.abspath(base))
