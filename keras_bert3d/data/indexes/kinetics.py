"""Kinetics-400/600/700 from the CSV annotations (``label,youtube_id,time_start,time_end,split[,is_cc]``)."""
import csv
import os
import re

from keras_bert3d.data.indexes._common import (DiskLookup, check_choice, find_annotation_dir, locate_base,
                                               read_class_file, report_missing)
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.video_container import VIDEO_EXTENSIONS

SUBSETS = ("train", "val", "test")
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "validate", "validation", "valid"),
               "test": ("test", "testing")}
REQUIRED = ("youtube_id", "time_start", "time_end")


def clip_stem(youtube_id, start, end):
    """The usual clip name without extension: ``<youtube_id>_<start:06d>_<end:06d>``."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def label_folders(label):
    """Folder spellings of a label in use: as is, spaces -> underscores, punctuation dropped."""
    names = [label, label.replace(" ", "_"), re.sub(r"\W+", "_", label).strip("_"), label.replace(" ", "")]
    return list(dict.fromkeys(n for n in names if n))


def _normalise_split(value):
    value = value.strip().lower()
    return next((subset for subset, names in SPLIT_NAMES.items() if value in names), value)


def read_rows(path, subset):
    """``[(line number, label or None, youtube_id, start, end)]`` of the rows of ``subset``."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        lacking = [name for name in REQUIRED if name not in header]
        if lacking:
            raise ValueError(f"{path}, line 1: the header lacks {', '.join(lacking)}; expected "
                             f"label,youtube_id,time_start,time_end,split (label optional for test); found {header}")
        col = {name: header.index(name) for name in header}
        needed = 1 + max(col[name] for name in (*REQUIRED, "label", "split") if name in col)
        rows, splits = [], set()
        for fields in reader:
            number = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) < needed:
                raise ValueError(f"{path}, line {number}: {len(fields)} fields, the header needs {needed}; "
                                 f"found {','.join(fields)!r}")
            if "split" in col:
                split = _normalise_split(fields[col["split"]])
                splits.add(split)
                if split != subset:
                    continue
            try:
                start, end = int(float(fields[col["time_start"]])), int(float(fields[col["time_end"]]))
            except ValueError:
                raise ValueError(f"{path}, line {number}: time_start/time_end must be numbers; found "
                                 f"{','.join(fields)!r}") from None
            label = fields[col["label"]].strip() if "label" in col else ""
            rows.append((number, label or None, fields[col["youtube_id"]].strip(), start, end))
    if not rows and splits:
        raise ValueError(f"{path}: no row of split {subset!r} (splits present: {', '.join(sorted(splits))}); "
                         f"pass the subset of this file")
    return rows


def read_classes(classes):
    """Class names from a list, a classInd-like text file or a Kinetics CSV (its sorted labels)."""
    if isinstance(classes, (list, tuple)):
        return [str(c) for c in classes]
    path = os.fspath(classes)
    if path.lower().endswith(".csv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "label" not in rows[0]:
            raise ValueError(f"classes={path!r}: a CSV of classes needs a 'label' column")
        return sorted({row["label"].strip() for row in rows if row["label"].strip()})
    return read_class_file(path)


def csv_names(subset):
    """The annotation file names of ``subset``: ``train.csv`` and the prefixed ``kinetics400_train.csv``,
    ``kinetics_700_2020_train.csv`` (MMAction2, CVDF), ..."""
    return re.compile(rf"^(?:kinetics[\w-]*_)?(?:{'|'.join(SPLIT_NAMES[subset])})\.csv$", re.IGNORECASE)


def _csvs_in(folder, pattern):
    try:
        return sorted(n for n in os.listdir(folder) if pattern.match(n) and os.path.isfile(os.path.join(folder, n)))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def find_csv(root, annotations_csv, subset):
    if annotations_csv is not None:
        annotations_csv = os.fspath(annotations_csv)
        if os.path.isfile(annotations_csv):
            return annotations_csv
        if annotations_csv.lower().endswith(".csv"):
            raise FileNotFoundError(f"annotations CSV not found: annotations_csv={annotations_csv!r}")
    pattern = csv_names(subset)
    folder = find_annotation_dir(root, annotations_csv, ("annotations",), f"{subset}.csv (or kinetics*_{subset}.csv)",
                                 lambda d: bool(_csvs_in(d, pattern)))
    found = _csvs_in(folder, pattern)
    if len(found) > 1:
        raise ValueError(f"{folder} holds {len(found)} {subset} CSVs: {', '.join(found)}; pass the one to use "
                         f"(annotations_csv=... / --annotations)")
    return os.path.join(folder, found[0])


def kinetics_index(root, annotations_csv=None, subset="train", classes=None):
    """Index Kinetics-400/600/700 clips from the CSV annotations.

    Args:
        root: the folder of the clips, laid out as ``ROOT/<label>/<id>_<start:06d>_<end:06d>.mp4``, or with a split
            folder ``ROOT/<split>/<label>/...`` (MMAction2: ``videos_<split>``), or flat (``ROOT[/<split>]/<clip>``),
            or a folder above one of those (found below it). Label folders may spell spaces as spaces or
            underscores; any video extension is accepted.
        annotations_csv: the CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``), or a folder holding
            ``<subset>.csv``; default ``ROOT/annotations/<subset>.csv`` or ``ROOT/<subset>.csv`` (also named
            ``kinetics400_<subset>.csv`` and the like), else the one such file anywhere below ROOT.
        subset: ``"train"``, ``"val"`` or ``"test"``; when the CSV has a split column only its rows are kept.
        classes: the class order (a list, a text file with one name a line, or another Kinetics CSV). Default:
            the **sorted unique labels of this CSV** (the order Kinetics models use). Pass the train CSV here when
            indexing a subset that might not hold every class.

    Returns:
        A ``VideoIndex``. Rows without a label (the test CSV may have no label column) get label -1 and class "".
        Clips missing on disk (common with YouTube downloads) are left out, listed in ``missing`` and warned
        about once; none on disk is a FileNotFoundError naming the folders looked in.
    """
    check_choice("subset", subset, SUBSETS)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Kinetics root folder not found: {root}")
    path = find_csv(root, annotations_csv, subset)
    rows = read_rows(path, subset)
    class_names = read_classes(classes) if classes is not None else sorted({r[1] for r in rows if r[1]})
    label_of = {name: i for i, name in enumerate(class_names)}
    lookup = DiskLookup()
    split_folders = [prefix + name for name in SPLIT_NAMES[subset] for prefix in ("", "videos_")]

    def find_at(base, label, stem):
        folders = [lookup.resolve(base, n) for n in label_folders(label)] if label else []
        for folder in [f for f in folders if f] + [base]:
            found = lookup.find_stem(folder, stem, VIDEO_EXTENSIONS)
            if found:
                return found
        return None

    def find(base, row):
        for folder in [base] + [os.path.join(base, name) for name in split_folders]:
            found = find_at(folder, *row)
            if found:
                return found
        return None

    listed = [(row[1], clip_stem(*row[2:])) for row in rows]
    base, looked = locate_base(root, listed, find, "the listed Kinetics clips")
    records, missing = [], []
    for (number, label, *_), entry in zip(rows, listed):
        if label is not None and label not in label_of:
            raise ValueError(f"{path}, line {number}: label {label!r} is not one of the classes={classes!r}")
        found = find(base, entry)
        if found is None:
            missing.append(os.path.join(base, label or "", entry[1] + ".mp4"))
        else:
            records.append(VideoRecord(found, label_of[label] if label else -1, label or ""))
    report_missing(f"Kinetics {subset}", missing, len(rows), base, looked)
    return VideoIndex(records, class_names, missing, source="video", root=os.path.abspath(base))
