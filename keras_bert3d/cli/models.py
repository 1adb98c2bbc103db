"""`bert3d models`: every preset with its backbone, input, tokens and parameter count."""
import json


def add_arguments(parser):
    parser.add_argument("names", nargs="*", help="presets to show (default: all)")
    parser.add_argument("--num-classes", type=int, default=51, help="classes of the head (default 51, HMDB51)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per model")


def run(args):
    from keras_bert3d.models.builder import build_model, list_models
    from keras_bert3d.models.describe import describe, format_table

    if args.num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1; received {args.num_classes}")
    names = args.names or list_models()
    rows = []
    for name in names:
        model = build_model(name, args.num_classes)
        rows.append(describe(model, name))
        del model
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
