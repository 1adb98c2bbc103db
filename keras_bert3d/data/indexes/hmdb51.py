"""HMDB51 with its official split files ``<class>_test_split{1,2,3}.txt`` (lines ``<video>.avi <0|1|2>``)."""
import os
import re

from keras_bert3d.data.indexes._common import (DiskLookup, check_split_args, find_annotation_dir, locate_base,
                                               malformed, read_lines, report_missing)
from keras_bert3d.data.records import VideoIndex, VideoRecord

ANNOTATION_FOLDERS = ("testTrainMulti_7030_splits", "test_train_splits", "splits")
SPLIT_FILE = re.compile(r"^(?P<name>.+)_test_split(?P<split>[123])\.txt$")
SUBSET_IDS = {"train": 1, "test": 2, "val": 2}  # 0 = unused in this split


def split_files(folder):
    """``{class name: {split: file path}}`` of the split files in ``folder``."""
    found = {}
    for name in sorted(os.listdir(folder)):
        match = SPLIT_FILE.match(name)
        if match:
            found.setdefault(match["name"], {})[int(match["split"])] = os.path.join(folder, name)
    return found


def _has_split_files(folder):
    return os.path.isdir(folder) and any(SPLIT_FILE.match(name) for name in os.listdir(folder))


def parse_split_file(path):
    """``[(video file name, 0|1|2)]`` from one class's split file."""
    entries = []
    for number, line in read_lines(path):
        parts = line.split()
        if len(parts) < 2 or parts[-1] not in ("0", "1", "2"):
            raise malformed(path, number, line, "'<video>.avi <0|1|2>' (0 unused, 1 train, 2 test)")
        entries.append((" ".join(parts[:-1]), int(parts[-1])))
    return entries


def hmdb51_index(root, annotations=None, split=1, subset="train"):
    """Index HMDB51 videos ``ROOT/<class>/<video>.avi`` with the official split files.

    Args:
        root: the folder of the class folders, or a folder above it (the official archives unpacked side by
            side, MMAction2's ``data/hmdb51`` with ``videos/`` and ``annotations/``); the folder holding the
            listed videos is found below it.
        annotations: the folder of ``<class>_test_split{1,2,3}.txt`` (or one of those files); default
            ``ROOT/testTrainMulti_7030_splits`` (or ``test_train_splits``, ``splits``), ``ROOT``, those next to
            ROOT or ``ROOT/../annotations``, else the one folder anywhere below ROOT holding such files (several:
            an error naming them).
        split: 1, 2 or 3.
        subset: ``"train"`` (lines marked 1) or ``"test"`` (lines marked 2; ``"val"`` is the reference's name for
            it). Lines marked 0 are unused in that split.

    Returns:
        A ``VideoIndex`` whose labels follow the sorted class names (the standard HMDB51 order is alphabetical:
        ``brush_hair`` = 0 ... ``wave`` = 50) and ``root`` the folder of the class folders. Listed videos not on
        disk (matched case-insensitively, then with another video extension) are left out, listed in ``missing``
        and warned about once; none on disk is a FileNotFoundError naming the folders looked in.
    """
    root, split = check_split_args(root, split, subset, "HMDB51")
    folder = find_annotation_dir(root, annotations, ANNOTATION_FOLDERS, "<class>_test_split<K>.txt files",
                                 _has_split_files)
    files = split_files(folder)
    class_names = sorted(files)
    lacking = [name for name in class_names if split not in files[name]]
    if lacking:
        raise FileNotFoundError(f"{folder}: no split {split} file for {len(lacking)} class(es): "
                                f"{', '.join(f'{name}_test_split{split}.txt' for name in lacking[:10])}")
    wanted = SUBSET_IDS[subset]
    listed = [(label, name, video) for label, name in enumerate(class_names)
              for video, mark in parse_split_file(files[name][split]) if mark == wanted]
    lookup = DiskLookup()

    def find(base, entry):
        name, video = entry
        return lookup.resolve_video(base, f"{name}/{video}") or lookup.resolve_video(base, video)

    base, looked = locate_base(root, [(name, video) for _, name, video in listed], find, "the listed HMDB51 videos")
    records, missing = [], []
    for label, name, video in listed:
        path = find(base, (name, video))
        if path is None:
            missing.append(os.path.join(base, name, video))
        else:
            records.append(VideoRecord(path, label, name))
    report_missing(f"HMDB51 split {split} {subset}", missing, len(listed), base, looked)
    return VideoIndex(records, class_names, missing, source="video", root=os.path.abspath(base))
