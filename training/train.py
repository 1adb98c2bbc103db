"""`python -m training.train ...`: the same as `bert3d train ...` (keras_bert3d/cli/train.py)."""
import sys

from keras_bert3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
