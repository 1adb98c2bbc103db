"""The distribution strategies of a training run: `get_strategy` (``train.strategy``), `worker_info` and
`WorkerLostError`.

``default`` (no distribution), ``mirrored`` (all local GPUs) and ``multi_worker`` (``MultiWorkerMirroredStrategy``
from ``TF_CONFIG``; Keras 3's ``model.fit`` cannot run under it, so training goes to the custom loop of
keras_bert3d.training.distributed). The names are keras_bert3d.training.config's ``STRATEGIES``.

A lost peer. When a worker of a ``multi_worker`` run dies, TensorFlow's coordination service aborts the
collectives of every other worker within seconds (heartbeats), and the step each one is in fails with an
``UnavailableError`` whose text names the peer as ``/job:worker/replica:0/task:1``. `lost_workers_reported`
turns such an error into `WorkerLostError`: one line that names the lost peer by its TF_CONFIG address and task
index (or, where TensorFlow's error names none, all the other workers as the candidates) and says to start
every worker again with the same command, which resumes from the run's backup.
"""
import contextlib
import functools
import json
import os
import re

import tensorflow as tf

from keras_bert3d.training.config import STRATEGIES
from keras_bert3d.training.run_folder import BACKUP


def get_strategy(name="default"):
    """The `tf.distribute.Strategy` named ``name``: ``"default"`` (no distribution), ``"mirrored"`` (all local
    GPUs; one CPU replica without GPUs) or ``"multi_worker"`` (``MultiWorkerMirroredStrategy`` from the
    ``TF_CONFIG`` environment variable). Create it before any other TensorFlow op of the program."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}; received strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    _check_tf_config(os.environ.get("TF_CONFIG"))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise RuntimeError(f"could not create MultiWorkerMirroredStrategy ({error}); it must be created at program "
                           "start, before any other TensorFlow op: call get_strategy('multi_worker') first") from error


def _check_tf_config(text):
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    if not text:
        raise ValueError(f"strategy='multi_worker' needs the TF_CONFIG environment variable, e.g. "
                         f"TF_CONFIG='{example}'")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); received TF_CONFIG={text!r}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG needs a 'cluster' dict and a 'task' dict, e.g. {example}; "
                         f"received TF_CONFIG={text!r}")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not in the cluster {sorted(cluster)}; "
                         f"received TF_CONFIG={text!r}")
    if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index must be an int in [0, {len(cluster[task_type])}); "
                         f"received TF_CONFIG={text!r}")


def worker_info(strategy):
    """``(task_type, task_id, is_chief)`` of this process (``(None, 0, True)`` without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None) or 0
    if task_type is None:
        return None, 0, True
    cluster = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return task_type, task_id, chief


class WorkerLostError(RuntimeError):
    """A peer of a multi-worker run was lost (killed, crashed, its host down or unreachable); ``peers``: the
    ``(task_type, task_index, address)`` of the lost peer(s), or of every candidate when TensorFlow's error did
    not say which (``named`` is then False). The message is one line; the TensorFlow error is its ``__cause__``."""

    def __init__(self, message, peers=(), named=True):
        super().__init__(message)
        self.peers, self.named = tuple(peers), named


# The errors a collective raises when a peer is gone: aborted by the coordination service's heartbeats or a
# closed or refused connection (Unavailable), a call cut short (Aborted, Cancelled, DeadlineExceeded); and
# what a peer that restarted gives (a FailedPrecondition on its incarnation).
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError)
_PEER_MARKERS = ("Collective ops is aborted", "incarnation", "unhealthy")
_TASK = re.compile(r"/job:([A-Za-z0-9_]+)(?:/replica:\d+)?/task:(\d+)")


def _text(error):
    return getattr(error, "message", None) or str(error)


def _peer_lost(error):
    return isinstance(error, tf.errors.OpError) and (
        isinstance(error, _PEER_ERRORS) or any(marker in _text(error) for marker in _PEER_MARKERS))


def _cluster(strategy):
    """``(own (task_type, index), [(task_type, index, address), ...] of the whole cluster)``, or None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or getattr(resolver, "task_type", None) is None:
        return None
    tasks = []
    for task_type, addresses in resolver.cluster_spec().as_dict().items():
        items = addresses.items() if isinstance(addresses, dict) else enumerate(addresses)
        tasks.extend((task_type, int(index), address) for index, address in sorted(items))
    return (resolver.task_type, int(resolver.task_id or 0)), tasks


def _named_tasks(text):
    """The tasks TensorFlow's error text names as lost, most specific rule first: the coordination service's
    list of unhealthy tasks, the remote target of a failed call, any task the text mentions."""
    for marker in ("unhealthy", "remote target"):
        if marker in text:
            found = _TASK.findall(text[text.index(marker):])
            if found:
                return {(job, int(index)) for job, index in found}
    return {(job, int(index)) for job, index in _TASK.findall(text)}


def _describe(peers):
    return ", ".join(f"the {task_type} at {address} (TF_CONFIG task index {index})"
                     for task_type, index, address in peers)


def lost_worker_error(error, strategy, run_dir=None):
    """The `WorkerLostError` that ``error`` (raised under ``strategy``) means, or None: not a multi-worker
    cluster, or not an error of a lost peer."""
    cluster = _cluster(strategy)
    if cluster is None or not _peer_lost(error):
        return None
    own, tasks = cluster
    others = [task for task in tasks if task[:2] != own]
    if not others:
        return None
    named = _named_tasks(_text(error))
    lost = [task for task in others if task[:2] in named]
    if lost or len(others) == 1:
        what = f"lost {_describe(lost or others)}"
    else:
        what = f"lost a peer that TensorFlow's error does not name, one of: {_describe(others)}"
    resume = "to resume"
    if run_dir is not None:
        backup = os.path.join(run_dir, BACKUP)
        resume = (f"to resume from the backup in {backup}" if tf.train.latest_checkpoint(backup)
                  else f"(there is no backup in {backup} yet: training starts over)")
    return WorkerLostError(
        f"{what}: training cannot go on without it ({type(error).__name__}). Start all {len(tasks)} workers "
        f"again with the same command {resume}", lost or others, named=bool(lost) or len(others) == 1)


@contextlib.contextmanager
def lost_workers_reported(strategy, run_dir=None):
    """Raises `WorkerLostError` (one line, naming the peer) for the error of a lost peer inside the block."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 (only a lost peer's OpError is replaced; the rest re-raised)
        lost = lost_worker_error(error, strategy, run_dir)
        if lost is None:
            raise
        raise lost from error


def reports_lost_workers(fit):
    """Decorates a training function that takes ``strategy=`` and ``run_dir=`` keywords (`custom_fit`): a lost
    peer raises `WorkerLostError`."""

    @functools.wraps(fit)
    def wrapped(*args, **kwargs):
        with lost_workers_reported(kwargs.get("strategy") or tf.distribute.get_strategy(), kwargs.get("run_dir")):
            return fit(*args, **kwargs)

    return wrapped
