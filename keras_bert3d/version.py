"""The version of keras_bert3d: one home, below every layer (the package root, setup.py and preset metadata
read it)."""
__version__ = "0.1.0"
