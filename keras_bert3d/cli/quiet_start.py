"""TensorFlow's start-up logging kept off the terminal of a `bert3d` command.

Importing TensorFlow prints 6-8 lines from C++ (absl's "All log messages before absl::InitializeLog()", oneDNN,
"Could not find cuda drivers") straight to file descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says, so no
Python-level redirection hides them. `import_quietly` points descriptor 2 at a temporary file while TensorFlow
is imported, then restores it; what was written there is shown only when the import fails (a real error), or
always with ``BERT3D_VERBOSE=1`` / ``bert3d --verbose COMMAND``. Python's own warnings and errors after the
import reach the terminal as before.
"""
import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile

VERBOSE_ENV = "BERT3D_VERBOSE"


def verbose():
    """True when the user asked to see TensorFlow's start-up logging."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _stderr_captured():
    """Descriptor 2 -> a temporary file for the block; yields a function returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lambda: (capture.flush(), capture.seek(0), capture.read().decode("utf-8", "replace"))[-1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_quietly(module="tensorflow"):
    """Imports ``module`` (TensorFlow by default) with its C++ start-up logging hidden, unless `verbose()`.

    A module that is not installed (TensorFlow on a JAX-only machine) is skipped: returns None.
    An import that fails re-raises after printing what TensorFlow wrote, so real errors still show."""
    if module in sys.modules or verbose() or importlib.util.find_spec(module) is None:
        return importlib.import_module(module) if importlib.util.find_spec(module) else None
    error, text = None, ""
    with _stderr_captured() as captured:
        try:
            return importlib.import_module(module)
        except BaseException as err:  # shown below, once descriptor 2 is the terminal again
            error, text = err, captured()
    sys.stderr.write(text)
    raise error
