"""`bert3d check-videos ROOT_OR_INDEX`: list every video that will not decode, with the reason."""
import json
import os


def add_arguments(parser):
    parser.add_argument("target", metavar="ROOT_OR_INDEX",
                        help="a folder (every video file under it), a dataset root with --dataset, a CSV of "
                             "path,label, a JSON list from `bert3d index --json`, or a text file of paths")
    parser.add_argument("--dataset", default=None,
                        help="index ROOT as this dataset (ucf101, hmdb51, kinetics, frames, folders, csv)")
    parser.add_argument("--annotations", default=None, help="annotation folder or file of --dataset")
    parser.add_argument("--split", type=int, default=1, help="split of --dataset (default 1)")
    parser.add_argument("--subset", default="train", help="subset of --dataset (default train)")
    parser.add_argument("--modality", default="rgb", help="rgb or flow (frame folders; default rgb)")
    parser.add_argument("--root", default=None, help="folder that relative paths of a list file resolve against")
    parser.add_argument("--min-frames", type=int, default=None, help="report videos shorter than this (clip length)")
    parser.add_argument("--deep", action="store_true", help="decode every frame, not only the first and last")
    parser.add_argument("--workers", type=int, default=None, help="parallel threads (default: CPU cores)")
    parser.add_argument("--json", action="store_true", help='print {"checked": n, "bad": [{"path", "reason"}]}')


def collect(args):
    """What ``args.target`` names: a VideoIndex or a list of paths."""
    from keras_bert3d.data.check import find_videos, read_index_json, read_path_list

    target = args.target
    if args.dataset is not None:
        from keras_bert3d.data.indexes import build_index

        return build_index(args.dataset, target, annotations=args.annotations, split=args.split,
                           subset=args.subset, modality=args.modality)
    if os.path.isdir(target):
        return find_videos(target)
    if not os.path.isfile(target):
        raise FileNotFoundError(f"no such folder or file: {target}")
    ext = os.path.splitext(target)[1].lower()
    if ext == ".csv":
        from keras_bert3d.data.indexes import csv_index

        return csv_index(target, args.root)
    if ext == ".json":
        return [path for path, _ in read_index_json(target)]
    return read_path_list(target, args.root)


def run(args):
    from keras_bert3d.data.check import check_videos

    report = check_videos(collect(args), min_frames=args.min_frames, workers=args.workers, deep=args.deep)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for entry in report["bad"]:
            print(f"{entry['path']}: {entry['reason']}")
        print(f"checked {report['checked']} videos: {len(report['bad'])} will not decode")
    return 1 if report["bad"] else 0
