"""The input pipeline across hosts: a tf.data service dispatcher, its workers, and `distribute`.

One dispatcher (`start_dispatcher`) hands the work of each epoch to the workers (`start_worker`, one or more per
host); a trainer reads through it with ``make_dataset(..., service="grpc://HOST:PORT")``, which applies
`distribute` to its per-clip dataset. The clips are decoded, sampled and augmented on the workers; the trainer
batches them. Sharding is dynamic: the dispatcher hands out the TFRecord shards one at a time, each read once
per epoch, so a worker that dies costs the shards it was reading, not the epoch. One limit of TF's service (2.21):
the trainer waits for a dead worker's task until a worker is back at its address, so give workers a fixed
``--port`` and a supervisor that restarts them (systemd ``Restart=always``, a Kubernetes pod, a shell loop); the
restarted worker ends the epoch, minus the dead one's shards in flight.

What travels is the dataset's graph, so it must be pure TF: the TFRecord source only (video files and frame
folders are read with Python, `keras_bert3d.data.video_sources`), and the shards must be readable by every worker
at the same path (a shared filesystem, GCS). Bad records are dropped on the workers and logged there
(``ignore_errors(log_warning=True)``), not counted in the trainer's `BadVideoCounter`.

The command line: ``bert3d data-service dispatcher|worker`` (`keras_bert3d.cli.data_service`).
"""
import re

import tensorflow as tf

ADDRESS = re.compile(r"grpc://(?P<host>[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})")
SERVED_MODES = ("train", "val")
SOURCE_ERROR = "the service needs TFRecord input: `bert3d to-tfrecord`"
# How many elements the trainer asks the workers for at once (tf.data service's default is 16): clips are
# megabytes, so a few suffice to hide the network's latency.
MAX_OUTSTANDING_REQUESTS = 8


def check_address(name, value):
    """``value`` when it is ``grpc://HOST:PORT`` with a port in 1..65535, else a ValueError naming ``name``."""
    match = ADDRESS.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 0 < int(match.group("port")) < 65536:
        raise ValueError(f"`{name}` must be a tf.data service address grpc://HOST:PORT (the dispatcher's, as "
                         f"`bert3d data-service dispatcher` prints it); received {name}={value!r}")
    return value


def check_service(service, source, mode):
    """Whether ``make_dataset`` can serve its clips: a valid address, TFRecord input, train or val mode."""
    if service is None:
        return None
    check_address("service", service)
    if source != "tfrecord":
        raise ValueError(f"{SOURCE_ERROR}; received service={service!r} with source={source!r}")
    if mode not in SERVED_MODES:
        raise ValueError(f"`service` serves the train and val clips; received service={service!r} with mode={mode!r}")
    return service


def _ms(seconds):
    return None if seconds is None else max(1, int(round(float(seconds) * 1000)))


def start_dispatcher(port=0, work_dir=None, worker_timeout=None):
    """A started ``tf.data.experimental.service.DispatchServer``.

    Args:
        port: the port to listen on (0: a free one; the server's ``target`` says which).
        work_dir: a folder (or GCS path) for the dispatcher's journal: with it, a restarted dispatcher resumes
            its jobs (fault-tolerant mode). None: the state lives in memory.
        worker_timeout: seconds without a heartbeat after which the dispatcher counts a worker as lost (None: TF's
            default); it looks twice per timeout.
    """
    service = tf.data.experimental.service
    check = None if worker_timeout is None else _ms(worker_timeout / 2)
    config = service.DispatcherConfig(port=int(port), work_dir=work_dir, fault_tolerant_mode=work_dir is not None,
                                      worker_timeout_ms=_ms(worker_timeout), job_gc_check_interval_ms=check)
    return service.DispatchServer(config)


def start_worker(dispatcher, port=0, worker_address=None, heartbeat=None, dispatcher_timeout=None):
    """A started ``tf.data.experimental.service.WorkerServer`` registered with ``dispatcher``.

    Args:
        dispatcher: the dispatcher's address, ``grpc://HOST:PORT``.
        port: the port to listen on (0: a free one).
        worker_address: the host name other hosts reach this worker by (default ``localhost``: one host only).
        heartbeat: seconds between the worker's heartbeats to the dispatcher (None: TF's default).
        dispatcher_timeout: seconds the worker retries an unreachable dispatcher before it fails (None: TF's).
    """
    check_address("dispatcher", dispatcher)
    service = tf.data.experimental.service
    address = None if worker_address is None else f"{worker_address}:%port%"
    config = service.WorkerConfig(dispatcher_address=dispatcher[len("grpc://"):], worker_address=address,
                                  port=int(port), heartbeat_interval_ms=_ms(heartbeat),
                                  dispatcher_timeout_ms=_ms(dispatcher_timeout))
    return service.WorkerServer(config)


def distribute(dataset, address, job_name=None, max_outstanding_requests=MAX_OUTSTANDING_REQUESTS):
    """``dataset`` read through the tf.data service at ``address``, dynamically sharded: each element once per
    epoch, in the order the workers produce them. The graph must be pure TF: one holding a Python function
    (``tf.numpy_function``, ``py_function``) is refused when the trainer registers it (its workers could not run it).

    Args:
        job_name: trainers that give the same name share one job (each element goes to one of them); None: this
            iteration has a job of its own.
    """
    check_address("service", address)
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.FAIL
    served = tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=address, job_name=job_name,
        max_outstanding_requests=max_outstanding_requests)
    try:
        return dataset.with_options(options).apply(served)
    except tf.errors.FailedPreconditionError as err:  # registering a graph that holds Python code
        raise ValueError(f"the dataset cannot travel to the tf.data service at {address}: its graph holds Python code "
                         f"(tf.numpy_function / py_function) or a resource of this process; {SOURCE_ERROR} "
                         f"({str(err).splitlines()[0][:200]})") from err
