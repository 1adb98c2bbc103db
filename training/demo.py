"""`python -m training.demo` (`make demo`): BERT pooling against TGAP on the synthetic ordered-events dataset.

The job is `keras_bert3d.training.demo`; this driver hands it the configs beside it (configs/synthetic_*.yaml).
"""
import os
import sys

from keras_bert3d.training.demo import main

if __name__ == "__main__":
    sys.exit(main(configs_dir=os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")))
