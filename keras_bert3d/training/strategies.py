"""The distribution strategies of a training run: `get_strategy` (``train.strategy``) and `worker_info`.

``default`` (no distribution), ``mirrored`` (all local GPUs) and ``multi_worker`` (``MultiWorkerMirroredStrategy``
from ``TF_CONFIG``; Keras 3's ``model.fit`` cannot run under it, so training goes to the custom loop of
keras_bert3d.training.distributed). The names are keras_bert3d.training.config's ``STRATEGIES``.
"""
import json
import os

import tensorflow as tf

from keras_bert3d.training.config import STRATEGIES


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
