"""Shared helpers of the dataset indexes: argument checks, annotation reading, disk lookup, the missing report."""
import os
import warnings

from keras_bert3d.data.video_container import VIDEO_EXTENSIONS
from keras_bert3d.validation import check_choice, check_int_range  # check_choice: also for the index modules

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SHOWN_MISSING = 10  # how many missing entries the warning names


class MissingFilesWarning(UserWarning):
    """An index lists entries that are not on disk; they are left out (see ``VideoIndex.missing``)."""


def check_split(split):
    return int(check_int_range("split", split, 1, 3))


def check_subset(subset, allowed=("train", "test", "val")):
    """``train``/``test``; ``val`` is accepted as the reference's name for the test list of UCF101/HMDB51."""
    check_choice("subset", subset, allowed)
    return subset


def check_split_args(root, split, subset, dataset):
    """``(root, split)`` of a split index after checking them; ``dataset`` names the root in the error."""
    split = check_split(split)
    check_subset(subset)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{dataset} root folder not found: {root}")
    return root, split


def read_lines(path):
    """``(line_number, stripped text)`` for each non-blank line; CRLF/CR line ends and a UTF-8 BOM are handled."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


SKIPPED_FOLDERS = ("__MACOSX",)  # archive tools' side folders, never data
SEARCH_DEPTH = 4  # how deep below a root annotation files and video folders are looked for


def _subfolders(folder):
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if e.is_dir() and not e.name.startswith(".")
                          and e.name not in SKIPPED_FOLDERS)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def walk_folders(root, max_depth=SEARCH_DEPTH, descend=None):
    """Folders at and below ``root`` (breadth first, hidden and archive side folders skipped, ``max_depth``
    levels); ``descend(folder) -> False`` stops the walk below that folder."""
    level = [os.fspath(root)]
    for depth in range(max_depth + 1):
        following = []
        for folder in level:
            yield folder
            if depth < max_depth and (descend is None or descend(folder)):
                following.extend(_subfolders(folder))
        level = following


def _ambiguous(what, candidates, argument):
    shown = "\n  ".join(candidates[:10])
    return ValueError(f"{len(candidates)} places hold {what}; pass the one to use ({argument}):\n  {shown}")


def find_annotation_dir(root, annotations, folder_names, what, has_annotations):
    """The folder of the annotation files: ``annotations`` (a folder, a file in it, or a folder holding one of
    ``folder_names``), else the default places (``ROOT/<folder_name>``, ``ROOT``, ``ROOT/../<folder_name>``,
    MMAction2's ``ROOT/../annotations``), else the one folder anywhere below ROOT that holds them (several:
    a ValueError naming them)."""
    if annotations is not None:
        annotations = os.fspath(annotations)
        if os.path.isfile(annotations):
            annotations = os.path.dirname(annotations) or "."
        if not os.path.isdir(annotations):
            raise FileNotFoundError(f"annotations folder not found: annotations={annotations!r}")
        candidates = [annotations] + [os.path.join(annotations, name) for name in folder_names]
        for folder in candidates:
            if has_annotations(folder):
                return folder
        raise FileNotFoundError(f"no {what} in {' or '.join(candidates)}")
    parent = os.path.dirname(os.path.abspath(root))
    candidates = ([os.path.join(root, name) for name in folder_names] + [root]
                  + [os.path.join(parent, name) for name in (*folder_names, "annotations")])
    for folder in candidates:
        if has_annotations(folder):
            return folder
    found = [folder for folder in walk_folders(root) if has_annotations(folder)]
    if len(found) > 1:
        raise _ambiguous(what, found, "annotations=... / --annotations")
    if found:
        return found[0]
    raise FileNotFoundError(f"no {what} in {' or '.join(candidates)} or anywhere below {root}; pass the "
                            f"annotations folder (annotations=... / --annotations)")


def locate_base(root, entries, find, what):
    """The folder the listed ``entries`` live under: ``root`` or the one folder below it (``SEARCH_DEPTH``
    levels) where the most of a sample of them are found by ``find(base, entry) -> path or None``.

    Returns ``(base, folders looked in)``. A tie between folders neither of which holds the other is a
    ValueError naming them (two copies of the dataset under one root); no folder with any entry returns ``root``.
    """
    root = os.fspath(root)
    if not entries:
        return root, [root]
    step = max(1, len(entries) // 40)
    sample = list(entries[::step])[:40]
    hits, looked = {}, []

    def descend(folder):
        looked.append(folder)
        hits[folder] = sum(find(folder, entry) is not None for entry in sample)
        return hits[folder] < len(sample)  # everything found here: nothing deeper to look at

    for _ in walk_folders(root, SEARCH_DEPTH - 1, descend):
        pass
    best = max(hits.values())
    if best == 0:
        return root, looked
    winners = [folder for folder in looked if hits[folder] == best]
    winners = [w for w in winners if not any(w.startswith(o.rstrip(os.sep) + os.sep) for o in winners if o != w)]
    if len(winners) > 1:
        raise _ambiguous(f"{what} ({best} of {len(sample)} sampled entries each)", winners, "a root below these")
    return winners[0], looked


def read_class_file(path):
    """Class names in label order from a classInd-like file: lines ``<index> <name>`` with consecutive indices
    from 0 or from 1 (UCF101's classInd.txt), or one name a line."""
    lines = read_lines(path)
    split = [line.split(None, 1) for _, line in lines]
    if not lines or not all(len(p) == 2 and p[0].isdigit() for p in split):
        return [line for _, line in lines]
    by_index = {}
    for (number, line), (index, name) in zip(lines, split):
        if int(index) in by_index:
            raise ValueError(f"{path}, line {number}: duplicate class index in {line!r}")
        by_index[int(index)] = name.strip()
    first = min(by_index)
    if first not in (0, 1) or sorted(by_index) != list(range(first, first + len(by_index))):
        raise ValueError(f"{path}: class indices must run 0..N-1 or 1..N without gaps; found {sorted(by_index)[:5]}...")
    return [by_index[i] for i in range(first, first + len(by_index))]


def malformed(path, line_number, line, expected):
    return ValueError(f"{path}, line {line_number}: expected {expected}; found {line!r}")


def parse_int(text, path, line_number, line, expected):
    try:
        return int(text)
    except ValueError:
        raise malformed(path, line_number, line, expected) from None


class DiskLookup:
    """Finds entries under a root by listing each directory once (exact name first, then case-insensitively).

    Checking each listed file with a stat call is slow on network file systems for Kinetics-size datasets; one
    ``os.scandir`` per folder is not. The case-insensitive fallback covers the well-known UCF101 mismatch
    (``HandStandPushups`` vs ``HandstandPushups``) and similar renames by extraction tools.
    """

    def __init__(self):
        self._listings = {}

    def listing(self, directory):
        """``(names, lower-case name -> name)`` of a directory; empty when it does not exist."""
        directory = os.path.normpath(directory)
        if directory not in self._listings:
            try:
                names = set(os.listdir(directory))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                names = set()
            lower = {}
            for name in sorted(names):
                lower.setdefault(name.lower(), name)
            self._listings[directory] = (names, lower)
        return self._listings[directory]

    def child(self, directory, name):
        """The on-disk spelling of ``name`` inside ``directory``, or None."""
        names, lower = self.listing(directory)
        if name in names:
            return name
        return lower.get(name.lower())

    def resolve(self, root, relative):
        """The existing path of ``root/relative`` (each component matched case-insensitively if needed), or None."""
        current = os.fspath(root)
        parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts:
            return None
        for part in parts:
            found = self.child(current, part)
            if found is None:
                return None
            current = os.path.join(current, found)
        return current

    def resolve_video(self, root, relative):
        """`resolve`, else the same stem with another video extension (a list's ``.avi`` re-encoded as ``.mp4``)."""
        found = self.resolve(root, relative)
        if found is not None:
            return found
        head, name = os.path.split(relative.replace("\\", "/"))
        folder = self.resolve(root, head) if head else os.fspath(root)
        stem, ext = os.path.splitext(name)
        if folder is None or ext.lower() not in VIDEO_EXTENSIONS:
            return None
        return self.find_stem(folder, stem, VIDEO_EXTENSIONS)

    def find_stem(self, directory, stem, extensions):
        """The path of ``directory/stem<ext>`` for the first extension found, or None."""
        for ext in extensions:
            found = self.child(directory, stem + ext)
            if found is not None:
                return os.path.join(directory, found)
        return None


def report_missing(name, missing, total, where, looked_in=None):
    """Warn once, up front, about every listed entry that is not on disk (first few shown, and the count);
    when every one is missing, a FileNotFoundError naming the folders looked in (an index of nothing)."""
    if not missing:
        return
    if len(missing) == total:
        folders = list(dict.fromkeys(looked_in or [where]))
        shown = ", ".join(folders[:SHOWN_MISSING]) + (f" (+{len(folders) - SHOWN_MISSING} more)"
                                                      if len(folders) > SHOWN_MISSING else "")
        raise FileNotFoundError(f"{name} index: none of the {total} listed entries is on disk (first: "
                                f"{missing[0]}); looked in {shown}. Pass the folder that holds them as the root")
    shown = ", ".join(missing[:SHOWN_MISSING])
    more = f" (+{len(missing) - SHOWN_MISSING} more)" if len(missing) > SHOWN_MISSING else ""
    message = (f"{name} index: {len(missing)} of {total} listed entries are missing under {where} and are left "
               f"out (see VideoIndex.missing): {shown}{more}")
    warnings.warn(message, MissingFilesWarning, stacklevel=3)
