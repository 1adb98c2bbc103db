"""The lock that holds a run folder while a run trains in it: `RunLock`.

Two processes training into the same ``<output_dir>/<name>/`` would delete each other's backups and overwrite
each other's ``best.keras``; the second one to start gets a `RunFolderLocked` error that names the lock file and
the process holding it (pid and host), instead.
"""
import json
import logging
import os
import socket

from keras_bert3d.training import run_folder

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

log = logging.getLogger(__name__)

class RunFolderLocked(RuntimeError):
    """Raised when another process holds the run folder's lock."""


class RunLock:
    """Holds ``<run_dir>/train.lock`` from ``__enter__`` to ``__exit__`` (a context manager).

    The lock is the operating system's, taken on the open file: ``fcntl.flock`` (exclusive, non-blocking) on
    POSIX, ``msvcrt.locking`` of its first byte on Windows. The system releases it when the holding process
    ends in any way (exit, crash, kill -9), so a killed run never leaves a stale lock: the same command started
    again takes it and resumes. The file stays in the folder and tells who holds (held) the lock: pid, host and
    the time taken; it is only informative, the lock is what the system holds.

    Network file systems: on Linux, ``flock`` on NFS (v3 with lockd, v4) is carried out as a POSIX lock that
    the server grants across hosts, so two hosts sharing a run folder exclude each other. A file system that
    refuses locks (some NFS mounts with ``nolock``, some FUSE file systems) raises ENOLCK or EOPNOTSUPP: the
    run then goes on without a lock, with a warning, rather than not at all. With ``nolock`` mounts the lock is
    local to each host. Under ``train.strategy=multi_worker`` only the chief takes the lock (every worker of one
    run shares the folder).
    """

    def __init__(self, run_dir):
        self.run_dir = os.fspath(run_dir)
        self.path = os.path.join(self.run_dir, run_folder.LOCK)
        self._file = None

    def holder(self):
        """What the lock file says about the process that holds (or last held) the lock, as a dict."""
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.loads(f.read() or "{}")
        except (OSError, ValueError):
            return {}

    def __enter__(self):
        os.makedirs(self.run_dir, exist_ok=True)
        self._file = open(self.path, "a+", encoding="utf-8")
        try:
            _lock(self._file)
        except OSError as error:
            if not _held(error):
                log.warning(f"could not lock {self.path} ({error}); training without a lock")
                return self
            self._file.close()
            self._file = None
            holder = self.holder()
            who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {holder.get('since', '?')})"
                   if holder else "another process")
            raise RunFolderLocked(
                f"the run folder {self.run_dir} is in use: {who} holds its lock {self.path}. Wait for that run to "
                "end, or give this one another `name` or `output_dir`") from None
        import datetime

        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": datetime.datetime.now().isoformat(timespec="seconds")}))
        self._file.flush()
        return self

    def __exit__(self, *exc_info):
        if self._file is not None:
            try:
                _unlock(self._file)
            except OSError:
                pass
            self._file.close()
            self._file = None
        return False


def _held(error):
    """True when ``error`` says another process holds the lock (rather than that locks are not supported)."""
    import errno

    return error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, getattr(errno, "EDEADLK", None))


def _lock(file):
    if fcntl is not None:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)


def _unlock(file):
    if fcntl is not None:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    else:
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)
