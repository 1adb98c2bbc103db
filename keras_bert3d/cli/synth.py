"""`bert3d synth OUTDIR`: write the embedded ordered-events dataset (real mp4/avi videos, UCF101 layout)."""


def _size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be WIDTHxHEIGHT, e.g. 64x48; received {text!r}") from None
    return width, height


def add_arguments(parser):
    parser.add_argument("outdir", help="folder to write (class folders, classInd.txt, train/testlist0K.txt)")
    parser.add_argument("--classes", type=int, default=4, help="number of classes (orders of events; default 4)")
    parser.add_argument("--videos-per-class", type=int, default=10, help="videos per class (default 10)")
    parser.add_argument("--demo", action="store_true",
                        help="the demo's settings (264-frame 20x16 videos, 16-frame events >= 48 frames apart and "
                             "from the ends: what training/configs/synthetic_*.yaml expect); flags below override")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (default 48)")
    parser.add_argument("--size", default=None, help="frame size WIDTHxHEIGHT, even numbers (default 64x48)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same videos; default 0)")
    parser.add_argument("--formats", default="mp4,avi", help="containers used in turn (default mp4,avi)")
    parser.add_argument("--min-gap", type=int, default=None,
                        help="minimum number of event-free frames between two events (default: the largest that fits)")
    parser.add_argument("--margin", type=int, default=None,
                        help="minimum number of event-free frames at either end (default: half the gap)")
    parser.add_argument("--event-frames", type=int, default=None, help="frames each event is visible (default 3)")
    parser.add_argument("--event-size", type=float, default=None,
                        help="side of an event's square, a fraction of the shorter frame side (default 0.25)")
    parser.add_argument("--gop-size", type=int, default=None,
                        help="frames per group of pictures; 1: every frame a keyframe, so no trace of an event "
                             "lasts past it (default 12)")


def run(args):
    import time

    from keras_bert3d.data.synthetic import write_synthetic_dataset

    from keras_bert3d.data.synthetic import DEMO

    settings = dict(DEMO) if args.demo else {}
    given = {"num_frames": args.frames, "size": None if args.size is None else _size(args.size),
             "min_gap": args.min_gap, "margin": args.margin, "event_frames": args.event_frames,
             "event_size": args.event_size, "gop_size": args.gop_size}
    settings.update({key: value for key, value in given.items() if value is not None})
    start = time.perf_counter()
    info = write_synthetic_dataset(args.outdir, num_classes=args.classes, videos_per_class=args.videos_per_class,
                                   seed=args.seed, formats=tuple(f for f in args.formats.split(",") if f),
                                   **settings)
    print(f"wrote {len(info['videos'])} videos of {info['num_frames']} frames, {info['size'][0]}x{info['size'][1]}, "
          f"{info['num_classes']} classes ({', '.join(info['class_names'])}) to {args.outdir} "
          f"in {time.perf_counter() - start:.1f}s")
    print(f"events: {info['num_events']} per video, {info['event_frames']} frames each, >= {info['min_gap']} "
          f"event-free frames apart, >= {info['margin']} from either end")
    print(f"splits: classInd.txt, trainlist0{{1,2,3}}.txt, testlist0{{1,2,3}}.txt in {args.outdir} "
          f"(index it with: bert3d index ucf101 {args.outdir})")
    return 0
