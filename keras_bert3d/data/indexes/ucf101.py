"""UCF101 with its official split files (``ucfTrainTestlist``: classInd.txt, trainlist0K.txt, testlist0K.txt)."""
import os

from keras_bert3d.data.indexes._common import (DiskLookup, check_split_args, find_annotation_dir, locate_base,
                                               malformed, parse_int, read_lines, report_missing)
from keras_bert3d.data.records import VideoIndex, VideoRecord

ANNOTATION_FOLDER = "ucfTrainTestlist"


def _has_lists(folder):
    return os.path.isfile(os.path.join(folder, "classInd.txt")) and os.path.isfile(
        os.path.join(folder, "trainlist01.txt"))


def read_class_ind(path):
    """Class names in label order from ``classInd.txt`` lines ``<1-based index> <name>``."""
    by_index = {}
    for number, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise malformed(path, number, line, "'<index> <class name>'")
        index = parse_int(parts[0], path, number, line, "'<index> <class name>' with an integer index")
        if index in by_index or parts[1] in by_index.values():
            raise ValueError(f"{path}, line {number}: duplicate class index or name in {line!r}")
        by_index[index] = parts[1]
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise ValueError(f"{path}: class indices must be 1..{len(by_index)} (1-based, no gaps); "
                         f"found {sorted(by_index)[:5]}...")
    return [by_index[i] for i in range(1, len(by_index) + 1)]


def split_path_and_label(line):
    """``(path, label or None)`` from ``<path> [<int>]``."""
    parts = line.split()
    if len(parts) >= 2 and parts[-1].lstrip("-").isdigit():
        return " ".join(parts[:-1]), int(parts[-1])
    return line, None


def parse_list(path, class_names, with_label):
    """``[(relative path, 0-based label)]``; labels from the 1-based column (train) or the class folder (test)."""
    by_lower = {name.lower(): i for i, name in enumerate(class_names)}
    entries = []
    for number, line in read_lines(path):
        rel, label = split_path_and_label(line)
        folder = rel.replace("\\", "/").split("/")[0] if "/" in rel.replace("\\", "/") else None
        from_folder = by_lower.get(folder.lower()) if folder else None
        if label is not None:
            if not 1 <= label <= len(class_names):
                raise ValueError(f"{path}, line {number}: label {label} is outside 1..{len(class_names)} "
                                 f"(classInd.txt); found {line!r}")
            label -= 1
            if from_folder is not None and from_folder != label:
                raise ValueError(f"{path}, line {number}: label {label + 1} ({class_names[label]}) contradicts "
                                 f"the class folder {folder!r}; found {line!r}")
        elif with_label:
            raise malformed(path, number, line, "'<Class>/<video>.avi <1-based label>'")
        elif from_folder is None:
            raise ValueError(f"{path}, line {number}: the class folder of {rel!r} is not a class of classInd.txt")
        else:
            label = from_folder
        entries.append((rel, label))
    return entries


def ucf101_index(root, annotations=None, split=1, subset="train"):
    """Index UCF101 videos ``ROOT/<Class>/<video>.avi`` with the official split files.

    Args:
        root: the folder of the class folders (``UCF-101``), or a folder above it: the one both official
            archives were unpacked in (``UCF-101/`` next to ``ucfTrainTestlist/``), MMAction2's ``data/ucf101``
            (``videos/`` and ``annotations/``); the folder holding the listed videos is found below it.
        annotations: the ``ucfTrainTestlist`` folder (or a file in it); default ``ROOT/ucfTrainTestlist``,
            ``ROOT``, ``ROOT/../ucfTrainTestlist``, ``ROOT/../annotations``, else the one folder below ROOT that
            holds ``classInd.txt`` and ``trainlist01.txt`` (several: an error naming them).
        split: 1, 2 or 3.
        subset: ``"train"`` (trainlist0K.txt, labels from its 1-based column) or ``"test"`` (testlist0K.txt,
            labels from the class folder); ``"val"`` is the reference's name for ``"test"``.

    Returns:
        A ``VideoIndex`` with 0-based labels in classInd.txt order and ``root`` the folder of the class folders.
        Listed videos not on disk (each path matched case-insensitively, then with another video extension, then
        directly under that folder) are left out, listed in ``missing`` and warned about once; none on disk is a
        FileNotFoundError naming the folders looked in.
    """
    root, split = check_split_args(root, split, subset, "UCF101")
    folder = find_annotation_dir(root, annotations, (ANNOTATION_FOLDER,), "classInd.txt and trainlist01.txt",
                                 _has_lists)
    class_names = read_class_ind(os.path.join(folder, "classInd.txt"))
    list_name = f"{'train' if subset == 'train' else 'test'}list0{split}.txt"
    entries = parse_list(os.path.join(folder, list_name), class_names, with_label=subset == "train")
    lookup = DiskLookup()

    def find(base, rel):
        return lookup.resolve_video(base, rel) or lookup.resolve_video(base, os.path.basename(rel.replace("\\", "/")))

    base, looked = locate_base(root, [rel for rel, _ in entries], find, "the listed UCF101 videos")
    records, missing = [], []
    for rel, label in entries:
        path = find(base, rel)
        if path is None:
            missing.append(os.path.join(base, rel))
        else:
            records.append(VideoRecord(path, label, class_names[label]))
    report_missing(f"UCF101 split {split} {subset}", missing, len(entries), base, looked)
    return VideoIndex(records, class_names, missing, source="video", root=os.path.abspath(base))
