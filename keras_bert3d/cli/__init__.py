"""The `bert3d` command: the library's tools, one subcommand each.

`bert3d --help`, `bert3d COMMAND --help` and argument errors import no TensorFlow: each subcommand's module
only declares its arguments, and imports what it needs when it runs.
"""
import argparse
import os
import sys

from keras_bert3d.cli import quiet_start

# name -> (module, help, needs the models): a command that loads or builds models first imports the public API
# (keras_bert3d.api), which registers every serializable class with Keras.
COMMANDS = {
    "models": ("keras_bert3d.cli.models", "list the presets: backbone, input, tokens, parameters", True),
    "convert": ("keras_bert3d.cli.convert", "convert a reference PyTorch/npz checkpoint to Keras weights", True),
    "train": ("keras_bert3d.cli.train", "train with the reference recipe (model.fit); the same command resumes", True),
    "evaluate": ("keras_bert3d.cli.evaluate", "the reference test protocol (multi-clip x crops) on a run", True),
    "tune": ("keras_bert3d.cli.tune", "search the BERT head and the recipe with KerasTuner", True),
    "demo": ("keras_bert3d.cli.demo", "build a preset, run a clip, show the top classes and BERT attention", True),
    "to-tfrecord": ("keras_bert3d.cli.to_tfrecord", "write a dataset index as TFRecord shards (parallel, resumable)",
                    False),
    "flow": ("keras_bert3d.cli.flow", "extract TV-L1 optical flow into the reference's frame folders", False),
    "models-config": ("keras_bert3d.cli.models_config",
                      "write TF Serving's models.config for the exports of a folder (versions, labels)", False),
    "export": ("keras_bert3d.cli.export", "export a .keras model as a TF Serving SavedModel (+ ONNX / LiteRT)", True),
    "predict": ("keras_bert3d.cli.predict", "classify a video file: top classes (multi-clip), --explain attention PNG",
                True),
    "index": ("keras_bert3d.cli.index", "show what a dataset index sees", False),
    "synth": ("keras_bert3d.cli.synth", "write the embedded ordered-events dataset (real mp4/avi videos, UCF101 layout)",
              False),
    "check-videos": ("keras_bert3d.cli.check_videos",
                     "list the videos of a folder or index that will not decode, with the reason", False),
    "data-service": ("keras_bert3d.cli.data_service",
                     "run a tf.data service dispatcher or worker: the training input across hosts", False),
}


def _top_parser():
    parser = argparse.ArgumentParser(prog="bert3d", description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ start-up logging (also BERT3D_VERBOSE=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text, _) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name):
    """The argument parser of one subcommand (imports only its light `keras_bert3d.cli.<name>` module)."""
    import importlib

    module, help_text, _ = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"bert3d {name}", description=help_text)
    importlib.import_module(module).add_arguments(parser)
    return parser


def parse(argv):
    """``(command, namespace)`` for a command line without the program name (`bert3d --help` exits here).

    Options and positionals may be intermixed (``bert3d evaluate RUN --clips 3 data.root=/data``).
    ``bert3d --verbose COMMAND ...`` shows TensorFlow's start-up logging (`quiet_start`)."""
    argv = list(argv)
    if argv[:1] == ["--verbose"]:
        os.environ[quiet_start.VERBOSE_ENV] = "1"
        argv = argv[1:]
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv)  # prints the help or the error, and exits
    return argv[0], command_parser(argv[0]).parse_intermixed_args(argv[1:])


def build_parser():
    """One parser holding every subcommand (for tools that want the whole grammar; `main` uses `parse`)."""
    import importlib

    parser = argparse.ArgumentParser(prog="bert3d", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text, _) in COMMANDS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import importlib

    name, args = parse(sys.argv[1:] if argv is None else argv)
    module, _, needs_models = COMMANDS[name]
    try:
        quiet_start.import_quietly("tensorflow")
        if needs_models:
            importlib.import_module("keras_bert3d.api")
        return importlib.import_module(module).run(args) or 0
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"bert3d {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
