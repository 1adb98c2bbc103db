"""`bert3d index`: what a dataset index sees (counts, classes, what is missing on disk, the first rows)."""
import json
import os
import sys
import warnings

from keras_bert3d.data.frame_folders import FRAME_LAYOUTS
from keras_bert3d.data.indexes import DATASETS

CLASS_ORDER = {
    "ucf101": "classInd.txt order",
    "hmdb51": "sorted class names (the standard order)",
    "kinetics": "sorted unique labels of the CSV, unless --classes",
    "frames": "labels of the split file; names from --classes or classInd.txt next to it",
    "folders": "sorted class folder names",
    "csv": "integer labels as given, else sorted class names",
}


def add_arguments(parser):
    parser.add_argument("dataset", choices=DATASETS, help="the dataset's format")
    parser.add_argument("root", help="the dataset folder (csv: the CSV, or pass it as --annotations)")
    parser.add_argument("--annotations", default=None,
                        help="annotation folder or file (ucfTrainTestlist, HMDB51 split folder, Kinetics CSV, "
                             "the reference's split file or settings folder, a path,label CSV)")
    parser.add_argument("--split", type=int, default=1, help="1, 2 or 3 (default 1)")
    parser.add_argument("--subset", default="train", choices=("train", "val", "test"),
                        help="train or test (Kinetics: train, val or test; default train)")
    parser.add_argument("--modality", default="rgb", choices=tuple(FRAME_LAYOUTS),
                        help="frame folders: rgb or flow")
    parser.add_argument("--classes", default=None, help="class order file (kinetics, frames)")
    parser.add_argument("--rows", type=int, default=10, help="how many rows to show (default 10)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list, one object per video: path (absolute), root (the folder the index "
                             "found the videos in), label, class, num_frames")


def format_rows(index, count):
    rows = index.records[:count]
    if not rows:
        return ""
    width = max(len(r.class_name) for r in rows)
    lines = [f"{'label':>5}  {'class':<{width}}  {'frames':>6}  path"]
    for r in rows:
        frames = "" if r.num_frames is None else str(r.num_frames)
        lines.append(f"{r.label:>5}  {r.class_name:<{width}}  {frames:>6}  {r.path}")
    if len(index.records) > count:
        lines.append(f"... {len(index.records) - count} more (--rows N, or --json for all)")
    return "\n".join(lines)


def run(args):
    from keras_bert3d.data.indexes import build_index
    from keras_bert3d.validation import check_int_range

    check_int_range("--rows", args.rows, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = build_index(args.dataset, args.root, annotations=args.annotations, split=args.split,
                            subset=args.subset, modality=args.modality, classes=args.classes)
    if args.json:
        for warning in caught:  # stdout stays pure JSON
            print(f"warning: {warning.message}", file=sys.stderr)
        root = index.root or os.path.abspath(args.root)
        print(f"root: {root}", file=sys.stderr)
        rows = [dict(r.to_dict(), path=os.path.abspath(r.path), root=root) for r in index.records]
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{args.dataset} {args.root}: {index.summary()}")
    if index.root and os.path.abspath(args.root) != index.root:
        print(f"videos found in {index.root}")
    print(f"class order: {CLASS_ORDER[args.dataset]}; first classes: "
          f"{', '.join(f'{i}={n}' for i, n in enumerate(index.class_names[:5]))}"
          f"{' ...' if index.num_classes > 5 else ''}")
    for warning in caught:  # the summary already lists what is missing
        if warning.category.__name__ != "MissingFilesWarning":
            print(f"warning: {warning.message}")
    table = format_rows(index, args.rows)
    if table:
        print(table)
    return 0
