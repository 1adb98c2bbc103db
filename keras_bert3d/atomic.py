"""The one way keras_bert3d writes a file that a crash must never leave half-written.

Every writer of a file that someone reads back later (run folders, backups, evaluation reports, the tuner's
leaderboard, preset folders, exported LiteRT/ONNX files, flow split files, ``synthetic.json``) goes through
this module: the content is written to a temporary name in the same folder, flushed and ``fsync`` ed, renamed
over the final name with ``os.replace`` and the folder is ``fsync`` ed, so that after a crash or a power loss
the final name holds either the old content or the new one, never a truncated file.

- `atomic_write_text` / `atomic_write_bytes`: a whole file from a string / bytes.
- `atomic_open`: a context manager yielding an open file (for ``csv`` writers, ``json.dump``, ``np.savez``).
- `atomic_path`: a context manager yielding a temporary path for libraries that write by name (Keras
  ``save``/``save_weights``, matplotlib, LiteRT, ONNX, ``tf.io.TFRecordWriter``). The temporary name ends
  with the final file name, so a suffix such as ``.keras`` or ``.weights.h5`` is kept.
- `atomic_folder`: the same for a folder (a preset folder, a flow split): built beside the final one, then
  swapped in; an existing folder is moved aside first and removed once the new one is in place.
- `save_model_atomic`: a Keras model without its optimiser to a ``.keras`` file.

On Windows ``os.replace`` is atomic on the same volume, but a folder cannot be ``fsync`` ed: that step is
skipped. This module is the bottom layer of the package: it imports nothing from keras_bert3d.
"""
import contextlib
import os
import shutil

TEMP_PREFIX = ".tmp-"  # temporary names start with it: `is_temporary` tells them from finished files


def temporary_name(path):
    """The temporary name beside ``path`` used while it is written: hidden, unique to this process, and
    ending with the final file name (so its extension is kept)."""
    folder, base = os.path.split(os.fspath(path))
    return os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{base}")


def is_temporary(name):
    """True for a file or folder name made by `temporary_name` (left behind by a crash)."""
    return os.path.basename(name).startswith(TEMP_PREFIX)


def fsync_file(path):
    """Flushes the content of file ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder):
    """Flushes the entries of ``folder`` (a rename in it) to disk; a no-op where folders cannot be opened
    (Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path):
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                fsync_file(os.path.join(root, name))
            fsync_folder(root)
    else:
        fsync_file(path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def commit(tmp, path):
    """``fsync`` s ``tmp`` (a file or a folder tree), renames it to ``path`` and ``fsync`` s the folder."""
    _fsync_tree(tmp)
    os.replace(tmp, path)
    fsync_folder(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name beside ``path``; when the block ends without an error the file is
    ``fsync`` ed and renamed to ``path``. On an error the temporary file is removed and ``path`` is untouched.
    The folder of ``path`` is created if needed."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_name(path)
    _remove(tmp)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """``open(path, mode)`` through `atomic_path`: the file appears under ``path`` complete, or not at all.
    ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to ``open`` (``newline=""``, ``encoding``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb'; received mode={mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def atomic_write_text(path, text, encoding="utf-8"):
    """Writes ``text`` to ``path`` atomically (temporary file, fsync, rename, fsync of the folder)."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return path


def atomic_write_bytes(path, data):
    """Writes ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync of the folder)."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path


@contextlib.contextmanager
def atomic_folder(path):
    """Yields a temporary folder beside ``path`` (created empty); when the block ends without an error, every
    file in it is ``fsync`` ed and it replaces ``path``. An existing ``path`` is first renamed aside and removed
    once the new folder is in place: a crash between the two renames leaves the old folder under its
    temporary name beside ``path``, never a mixture of old and new files."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = temporary_name(path)
    old = temporary_name(path + ".old")
    _remove(tmp)
    os.makedirs(tmp)
    try:
        yield tmp
        _fsync_tree(tmp)
        if os.path.lexists(path):
            _remove(old)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_folder(parent)
        _remove(old)
    finally:
        _remove(tmp)


def save_model_atomic(model, path):
    """``model`` (architecture and weights, no optimiser state) to ``path`` (.keras) through `atomic_path`."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    with atomic_path(path) as tmp:
        clone.save(tmp)
    return path
