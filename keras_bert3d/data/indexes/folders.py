"""Your own videos: one folder per class, or a CSV of ``path,label``."""
import csv
import os
import warnings

from keras_bert3d.data.indexes._common import IMAGE_EXTENSIONS, DiskLookup, report_missing
from keras_bert3d.data.video_container import is_video_file
from keras_bert3d.data.records import VideoIndex, VideoRecord


def _visible(entries):
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def is_frame_folder(path):
    """True when ``path`` holds extracted frames (image files, or extension-less ``flow_x_*``/``img_*`` files)."""
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name.lower()
            if entry.is_file() and (name.endswith(IMAGE_EXTENSIONS) or name.startswith(("img_", "flow_x_"))):
                return True
    return False


def _source_of(paths_by_source, where):
    kinds = [kind for kind, paths in paths_by_source.items() if paths]
    if len(kinds) > 1:
        raise ValueError(f"{where} mixes video files ({paths_by_source['video'][0]}, ...) and frame folders "
                         f"({paths_by_source['frames'][0]}, ...); keep one kind per index")
    return kinds[0] if kinds else "video"


def class_folder_index(root):
    """Index ``ROOT/<class>/<video>`` (any common video extension: mp4, avi, mkv, webm, mov, ...) or
    ``ROOT/<class>/<video folder>/<frames>`` (``source="frames"``).

    Labels follow the sorted class folder names (hidden folders are ignored). A class folder without videos keeps
    its label and is warned about. Nothing is listed as missing: the index is what is on disk.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root folder not found: {root}")
    with os.scandir(root) as entries:
        class_names = [e.name for e in _visible(entries) if e.is_dir()]
    if not class_names:
        raise ValueError(f"no class folders in root={root!r}: expected ROOT/<class>/<video>")
    records, found = [], {"video": [], "frames": []}
    for label, name in enumerate(class_names):
        with os.scandir(os.path.join(root, name)) as entries:
            for entry in _visible(entries):
                if entry.is_file() and is_video_file(entry.name):
                    kind = "video"
                elif entry.is_dir() and is_frame_folder(entry.path):
                    kind = "frames"
                else:
                    continue
                found[kind].append(entry.path)
                records.append(VideoRecord(entry.path, label, name))
    source = _source_of(found, f"root={root!r}")
    empty = sorted(set(class_names) - {r.class_name for r in records})
    if empty:
        warnings.warn(f"{len(empty)} of {len(class_names)} class folders under {root} hold no videos: "
                      f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}", UserWarning, stacklevel=2)
    return VideoIndex(records, class_names, [], source=source, root=os.path.abspath(root))


def _read_csv(csv_path):
    """``[(line number, path, label text, class text or None)]``; a header naming ``path`` is optional."""
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, [c.strip() for c in fields]) for fields in reader if any(c.strip() for c in fields)]
    if not rows:
        raise ValueError(f"{csv_path}: empty; expected lines 'path,label'")
    header = [c.lower() for c in rows[0][1]]
    if "path" in header:
        if "label" not in header:
            raise ValueError(f"{csv_path}, line {rows[0][0]}: the header names 'path' but no 'label'; found {header}")
        cols, rows = (header.index("path"), header.index("label"),
                      header.index("class") if "class" in header else None), rows[1:]
    else:
        cols = (0, 1, None)
    parsed = []
    for number, fields in rows:
        if len(fields) <= max(c for c in cols if c is not None) or not fields[cols[0]] or not fields[cols[1]]:
            raise ValueError(f"{csv_path}, line {number}: expected 'path,label'; found {','.join(fields)!r}")
        parsed.append((number, fields[cols[0]], fields[cols[1]], fields[cols[2]] if cols[2] is not None else None))
    return parsed


def _class_names(rows, csv_path):
    """Integer labels keep their value (names from a ``class`` column, else ``class_<label>``); class-name labels
    are numbered in sorted order."""
    if not all(label.lstrip("-").isdigit() for _, _, label, _ in rows):
        names = sorted({label for _, _, label, _ in rows})
        return names, {name: i for i, name in enumerate(names)}
    names = {}
    for number, _, label, name in rows:
        if int(label) < 0:
            raise ValueError(f"{csv_path}, line {number}: labels must be >= 0; found {label}")
        if name is not None and names.setdefault(int(label), name) != name:
            raise ValueError(f"{csv_path}, line {number}: label {label} is class {names[int(label)]!r} earlier and "
                             f"{name!r} here")
    count = 1 + max(int(label) for _, _, label, _ in rows)
    return [names.get(i, f"class_{i}") for i in range(count)], {label: int(label) for _, _, label, _ in rows}


def csv_index(csv_path, root=None):
    """Index a CSV of ``path,label`` (header optional; a header may add a ``class`` column).

    Args:
        csv_path: the CSV file. A label is an integer (kept as is) or a class name (classes numbered in sorted
            order).
        root: the folder relative paths are resolved against; default: the CSV's folder.

    Returns:
        A ``VideoIndex`` of video files, or of frame folders (``source="frames"``) when the paths are folders.
        Paths not on disk are left out, listed in ``missing`` and warned about once.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"CSV not found: csv_path={csv_path!r}")
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(csv_path))
    if not os.path.isdir(base):
        raise FileNotFoundError(f"root folder not found: root={base!r}")
    rows = _read_csv(csv_path)
    class_names, label_of = _class_names(rows, csv_path)
    lookup = DiskLookup()
    records, missing, found = [], [], {"video": [], "frames": []}
    for _, path, label, _ in rows:
        if os.path.isabs(path):
            resolved = path if os.path.exists(path) else None
        else:
            resolved = lookup.resolve(base, path)
        if resolved is None:
            missing.append(path if os.path.isabs(path) else os.path.join(base, path))
            continue
        found["frames" if os.path.isdir(resolved) else "video"].append(resolved)
        records.append(VideoRecord(resolved, label_of[label], class_names[label_of[label]]))
    source = _source_of(found, csv_path)
    report_missing(f"CSV {os.path.basename(csv_path)}", missing, len(rows), base)
    return VideoIndex(records, class_names, missing, source=source, root=os.path.abspath(base))
