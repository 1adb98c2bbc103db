"""Export a trained .keras model for TF Serving: the same as `bert3d export` (see keras_bert3d/cli/export.py).

    python -m training.export runs/demo/best.keras --output saved_models/demo [--version N] [--class-names FILE]
    python training/export.py ...     # the same

Writes ``<output>/<version>/`` (default ``saved_models/<model name>/<next version>/``): a SavedModel whose
``serving_default`` takes uint8 clips of any frame size and ``predict_normalized`` normalised crops, with the
class names, the preprocessing and a TF Serving warmup file inside.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_bert3d.cli import export as export_cli  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    export_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        export_cli.run(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
