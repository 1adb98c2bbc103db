"""`bert3d evaluate RUN`: the reference test protocol (multi-clip x crops) on a run's test subset."""
import argparse

EXAMPLES = """examples:
  bert3d evaluate runs/hmdb51_r2plus1d_bert                       # a run directory
  bert3d evaluate model.keras --config CONFIG.yaml data.root=/data/hmdb51
  bert3d evaluate runs/rgb --flow-model runs/flow                 # two-stream fusion
  bert3d evaluate runs/rgb --clips 10 --crops 3                   # K clips x 3 crops

Every test video is cut into clips x crops views (--clips cover --crops 10: the reference's non-overlapping
clips covering the video, each in ten crops); the raw logits are averaged per video. Writes metrics.json
(top-1, top-5, mean class accuracy), per_class.csv, confusion.png, predictions.csv and logits.npz into the
output folder and prints one summary line. --flow-model adds a flow stream: each stream's mean logits are
L2-normalised and summed."""


def clips_type(value):
    """``--clips``: `sampling.parse_clips` as an argparse type."""
    from keras_bert3d.data.sampling import parse_clips

    try:
        return parse_clips(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--{err}") from None


def positive_int(value):
    """An argparse type: an int >= 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int; received {value!r}")
    return number


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("model", help="a run directory (config.yaml, best.keras) or a .keras file")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.root=/data/hmdb51 data.split=2")
    parser.add_argument("--config", help="training config (YAML/JSON) for the data; default: the run's config.yaml")
    parser.add_argument("--clips", type=clips_type, default="cover",
                        help="clips per video: cover (reference: non-overlapping clips covering the video), "
                             "center (one centred clip) or K (K evenly spaced clips); default cover")
    parser.add_argument("--crops", type=int, choices=(1, 3, 10), default=10,
                        help="crops per clip: 10 (reference: centre, 4 corners, and flipped), 3 or 1; default 10")
    parser.add_argument("--view-batch", type=positive_int, default=10,
                        help="views per forward pass (memory); default 10 as the reference")
    parser.add_argument("--flow-model", help="a flow run directory or .keras file: two-stream fusion")
    parser.add_argument("--flow-config", help="the flow model's config (default: its run's config.yaml)")
    parser.add_argument("--flow-override", action="append", default=[], metavar="key=value",
                        help="an override of the flow model's config (repeatable; the positional ones are the "
                             "RGB model's), e.g. --flow-override data.root=/data/hmdb51_flow")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which model of a run directory; default best")
    parser.add_argument("--output", help="output folder; default <run>/eval_<clips>x<crops>")
    parser.add_argument("--limit", type=positive_int, help="evaluate the first N test videos only (a quick check)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from keras_bert3d.cli.training_messages import show_training_messages
    from keras_bert3d.training.evaluate import evaluate

    show_training_messages()
    metrics = evaluate(args.model, args.config, args.overrides, args.clips, args.crops, args.view_batch,
                       args.flow_model, args.flow_config, args.output, args.checkpoint, args.limit, not args.quiet,
                       args.flow_override)
    print_summary(metrics)
    return 0


def print_summary(metrics):
    """The summary line of an evaluation; of each stream, then of their fusion, for two streams."""
    from keras_bert3d.training.evaluation import summary_line

    if "streams" in metrics:
        for name in ("rgb", "flow"):
            print(summary_line(metrics["streams"][name], name), flush=True)
        print(summary_line(metrics, "two-stream"), flush=True)
    else:
        print(summary_line(metrics, metrics["modality"]), flush=True)
