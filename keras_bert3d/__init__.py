"""keras_bert3d: late temporal modeling with BERT for 3D-CNN action recognition (Keras 3).

``import keras_bert3d`` imports the public API (`keras_bert3d.api`), which registers every serializable class
with Keras so that ``keras.saving.load_model`` reads our ``.keras`` files, as ``import keras_hub`` does.
The ``bert3d`` console command alone skips that import, so ``bert3d --help`` and argument errors answer
without loading TensorFlow; its subcommands import what they need when they run. Either way the public
names resolve on first use.

Layer: the top of the library, with `keras_bert3d.api` (re-exports only). Nothing inside the package imports it;
``__version__`` lives in `keras_bert3d.version`, below every layer.
"""
import os as _os
import sys as _sys

from keras_bert3d.version import __version__  # noqa: F401


def _started_as_command():
    """True when the interpreter runs the ``bert3d`` console script (or ``python -m keras_bert3d.cli``)."""
    argv0 = (getattr(_sys, "argv", None) or [""])[0] or ""
    return _os.path.splitext(_os.path.basename(argv0))[0] == "bert3d" or argv0 == "-m"


if _started_as_command():
    def __getattr__(name):
        import importlib
        import importlib.util

        if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
            # Dunders, and submodules (`from keras_bert3d import backend` asks for the attribute first): never the
            # API, which imports the backbones and layers that may be importing right now.
            raise AttributeError(f"module 'keras_bert3d' has no attribute {name!r}")
        api = importlib.import_module("keras_bert3d.api")
        if name in api.__all__:
            return getattr(api, name)
        raise AttributeError(f"module 'keras_bert3d' has no attribute {name!r}")
else:
    from keras_bert3d.api import *  # noqa: F401,F403
    from keras_bert3d.api import __all__  # noqa: F401
