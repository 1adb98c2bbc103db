"""`bert3d flow`: TV-L1 optical flow of every video into the reference's frame folders."""
import os


def add_arguments(parser):
    parser.add_argument("source", metavar="ROOT_OR_INDEX",
                        help="a folder of videos (searched recursively) or an index JSON (`bert3d index --json`)")
    parser.add_argument("out_dir", help="one folder per video: flow_x_%%05d.jpg, flow_y_%%05d.jpg [img_%%05d.jpg]")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: every core)")
    parser.add_argument("--bound", type=float, default=20.0,
                        help="flow clipped to [-bound, bound] pixels, mapped to 0..255 (default 20)")
    parser.add_argument("--size", help="resize frames to HxW first, e.g. 256x340 (default: keep)")
    parser.add_argument("--rgb", action="store_true", help="also write the frames as img_%%05d.jpg")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1..100 (default 95)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from keras_bert3d.cli.to_tfrecord import parse_frame_size
    from keras_bert3d.data.flow import extract_flow_dataset
    from keras_bert3d.validation import check_int_range, check_positive_int

    check_positive_int("--workers", args.workers)
    check_int_range("--quality", args.quality, 1, 100)
    size = parse_frame_size(args.size) if args.size else None
    report = extract_flow_dataset(args.source, args.out_dir, workers=args.workers, bound=args.bound, size=size,
                                  write_rgb=args.rgb, jpeg_quality=args.quality, progress=not args.no_progress)
    print(f"{len(report['written'])} written, {len(report['skipped'])} already complete (skipped), "
          f"{len(report['bad'])} failed; in {args.out_dir}")
    for bad in report["bad"]:
        print(f"failed {bad['path']}: {bad['reason']}")
    return 1 if report["bad"] else 0
