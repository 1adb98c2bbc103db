"""`bert3d to-tfrecord`: write a dataset index as TFRecord shards (parallel, resumable, with progress)."""
import os


def add_arguments(parser):
    from keras_bert3d.data.frame_folders import FRAME_LAYOUTS  # light: the modalities without TensorFlow

    parser.add_argument("dataset", help="ucf101, hmdb51, kinetics, frames, folders or csv (as `bert3d index`)")
    parser.add_argument("root", help="the dataset folder (csv: the CSV file)")
    parser.add_argument("out_dir", help="the folder for the shards and <subset>-manifest.json")
    parser.add_argument("--annotations", help="the annotation folder or file (see `bert3d index`)")
    parser.add_argument("--split", type=int, default=1, help="1, 2 or 3 (default 1)")
    parser.add_argument("--subset", default="train", help="train or test (kinetics: val, test); the shard prefix")
    parser.add_argument("--modality", choices=tuple(FRAME_LAYOUTS), help="default: the preset's, else rgb")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--preset", help="resize frames to this preset's frame size (e.g. rgb_r2plus1d_32f_34_bert10)")
    size.add_argument("--frame-size", help="resize frames to HxW, e.g. 128x170 (default: keep the size)")
    parser.add_argument("--shards", type=int, help="number of shards (default: ~100-200 MB each)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: every core)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100 (default 90)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_frame_size(text):
    """'128x170' -> [128, 170] (height x width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        size = []
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"--frame-size must be HEIGHTxWIDTH, e.g. 128x170; received {text!r}")
    return size


def run(args):
    from keras_bert3d.data.indexes import build_index
    from keras_bert3d.data.tfrecord_writer import write_tfrecords

    frame_size, modality = None, args.modality
    if args.preset:
        from keras_bert3d.models.builder import get_preset

        preprocessing = get_preset(args.preset)["preprocessing"]
        frame_size = preprocessing["frame_size"]
        modality = modality or preprocessing["modality"]
    elif args.frame_size:
        frame_size = parse_frame_size(args.frame_size)
    modality = modality or "rgb"
    index = build_index(args.dataset, args.root, annotations=args.annotations, split=args.split,
                        subset=args.subset, modality=modality)
    print(index.summary())
    manifest = write_tfrecords(index, args.out_dir, num_shards=args.shards, frame_size=frame_size,
                               jpeg_quality=args.quality, workers=args.workers, progress=not args.no_progress,
                               prefix=args.subset, modality=modality)
    written = sum(len(entry["videos"]) for entry in manifest["shards"].values())
    total = sum(entry["bytes"] for entry in manifest["shards"].values())
    print(f"{written} videos in {manifest['num_shards']} shards ({total / 2**20:.1f} MB) in {args.out_dir}; "
          f"size {frame_size or 'kept'}; manifest {args.subset}-manifest.json")
    for bad in manifest["bad"]:
        print(f"skipped {bad['path']}: {bad['reason']}")
    return 0
