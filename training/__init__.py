"""Thin drivers of the installed package's tools, runnable from a clone as ``python -m training.<script>``.

The code lives in ``keras_bert3d.training`` (train, evaluate, tune, the recipe, callbacks, the custom loop)
and the ``bert3d`` command (``bert3d train|evaluate|tune|export``); ``configs/`` holds the paper's settings
and the demo's.
"""
