"""`python -m training.evaluate ...`: the same as `bert3d evaluate ...` (keras_bert3d/cli/evaluate.py)."""
import sys

from keras_bert3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
