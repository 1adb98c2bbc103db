"""`python -m training.export ...`: the same as `bert3d export ...` (keras_bert3d/cli/export.py)."""
import sys

from keras_bert3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
