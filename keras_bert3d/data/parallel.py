"""Worker processes for the data-writing jobs (`bert3d to-tfrecord`, `bert3d flow`).

The work (decode, resize, encode, optical flow) runs in processes, not threads: it is
CPU-bound Python/NumPy. ``start_method="fork"`` (Linux) starts workers at once without
importing anything again; it is safe when the workers only use libraries whose thread pools
the parent has not started (NumPy, PyAV, Pillow; never TensorFlow). ``"spawn"`` starts clean
interpreters: needed for OpenCV, whose thread pool deadlocks in a child forked from a parent
that has used it.

Bad input never stops a job: with ``skip_errors`` a task whose function raises (a decoder's
``VideoDecodeError``, PIL's ``DecompressionBombError``, ``cv2.error``, an ``av`` error: any ``Exception``
from one file) gives ``{"error": reason}`` (`skipped_reason`) for the caller to count and name; a
``MemoryError`` and Ctrl-C still stop it.
"""
import collections
import contextlib
import multiprocessing

from keras_bert3d.validation import check_choice, check_positive_int

START_METHODS = ("fork", "spawn")


def skipped_reason(err):
    """Why a task's file is skipped, from what its decoder raised: ``str(err)`` for a ``ValueError`` or
    ``OSError`` (`VideoDecodeError` names the file and the reason), else ``cannot decode (Type: message)``.
    A ``MemoryError`` is raised again: the machine's problem, not the file's."""
    if isinstance(err, MemoryError):
        raise err
    if isinstance(err, (ValueError, OSError)):
        return str(err)
    return f"cannot decode ({type(err).__name__}: {err})"


class SkipErrors:
    """``SkipErrors(fn)(task)``: ``fn(task)``, or ``{"error": skipped_reason(err)}`` when it raises an
    ``Exception`` (picklable when ``fn`` is a module-level function, so it runs in worker processes)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, task):
        try:
            return self.fn(task)
        except Exception as err:  # anything a decoder raises on one file; MemoryError is raised again
            return {"error": skipped_reason(err)}


def _context(start_method):
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context(start_method if start_method in methods else "spawn")


@contextlib.contextmanager
def ordered_map(fn, workers, initializer=None, start_method="fork", window=None, skip_errors=False):
    """``with ordered_map(fn, 4) as run: for result in run(tasks): ...``

    ``run(tasks)`` returns the results of ``fn(task)`` lazily, in the order of ``tasks``, computed
    by ``workers`` processes (``workers=1``: in this process, one at a time). ``fn`` must be a
    module-level function; ``initializer`` runs once in each worker process (never in this one).
    ``start_method``: "fork" or "spawn" (see the module docstring; "spawn" where fork is absent).
    At most ``window`` tasks (default ``2 * workers``) are queued or done but not yet consumed.
    The pool is terminated on exit, also on an exception or Ctrl-C. ``skip_errors``: a task whose ``fn``
    raises an ``Exception`` gives ``{"error": reason}`` (`SkipErrors`) instead of stopping the job.
    """
    fn = SkipErrors(fn) if skip_errors else fn
    workers = check_positive_int("workers", int(workers))
    check_choice("start_method", start_method, START_METHODS)
    window = check_positive_int("window", 2 * workers if window is None else int(window))
    if workers == 1:
        yield lambda tasks: map(fn, tasks)
        return
    pool = _context(start_method).Pool(workers, initializer=initializer)

    def run(tasks):  # at most `window` tasks in flight: finished results never pile up in memory
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(fn, (task,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    try:
        yield run
    finally:
        pool.terminate()
        pool.join()
