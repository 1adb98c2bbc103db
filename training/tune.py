"""`python -m training.tune ...`: the same as `bert3d tune ...` (keras_bert3d/cli/tune.py)."""
import sys

from keras_bert3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
