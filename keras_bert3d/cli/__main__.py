"""``python -m keras_bert3d.cli ...``: the `bert3d` command without the installed console script."""
import sys

from keras_bert3d.cli import main

sys.exit(main())
