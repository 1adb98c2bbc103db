"""The `bert3d` command: the library's tools, one subcommand each."""
import argparse
import os
import sys

COMMANDS = {
    "models": ("keras_bert3d.cli.models", "list the presets: backbone, input, tokens, parameters"),
    "convert": ("keras_bert3d.cli.convert", "convert a reference PyTorch/npz checkpoint to Keras weights"),
    "demo": ("keras_bert3d.cli.demo", "build a preset, run a clip, show the top classes and BERT attention"),
    "to-tfrecord": ("keras_bert3d.cli.to_tfrecord", "write a dataset index as TFRecord shards (parallel, resumable)"),
    "flow": ("keras_bert3d.cli.flow", "extract TV-L1 optical flow into the reference's frame folders"),
    "export": ("keras_bert3d.cli.export", "export a .keras model as a TF Serving SavedModel (+ ONNX / LiteRT)"),
    "predict": ("keras_bert3d.cli.predict", "classify a video file: top classes (multi-clip), --explain attention PNG"),
    "index": ("keras_bert3d.cli.index", "show what a dataset index sees"),
    "synth": ("keras_bert3d.cli.synth", "write the embedded ordered-events dataset (real mp4/avi videos, UCF101 layout)"),
    "check-videos": ("keras_bert3d.cli.check_videos",
                     "list the videos of a folder or index that will not decode, with the reason"),
}


def build_parser():
    import importlib

    parser = argparse.ArgumentParser(prog="bert3d", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import importlib

    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run(args) or 0
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"bert3d {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
