"""`bert3d data-service dispatcher|worker`: the tf.data service servers that spread the input across hosts.

    bert3d data-service dispatcher --port 5050 --work-dir /shared/dispatcher
    bert3d data-service worker --dispatcher grpc://host-a:5050 --port 5051 --worker-address host-b

Each prints where it listens, then serves until Ctrl-C or SIGTERM, and exits 0. Trainers read through the
dispatcher with the training config's ``data.service: grpc://HOST:PORT`` (TFRecord input: `bert3d to-tfrecord`).
"""
import signal
import socket
import threading

ROLES = ("dispatcher", "worker")
DISPATCHER_FLAGS = ("work_dir", "worker_timeout")
WORKER_FLAGS = ("dispatcher", "worker_address", "heartbeat")


def add_arguments(parser):
    parser.add_argument("role", choices=ROLES, help="dispatcher (one per cluster) or worker (one or more per host)")
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (0: a free one, printed)")
    parser.add_argument("--work-dir", help="dispatcher: a folder for its journal, so a restarted dispatcher "
                                           "resumes its jobs (fault tolerance)")
    parser.add_argument("--worker-timeout", type=float,
                        help="dispatcher: seconds without a heartbeat before a worker counts as dead")
    parser.add_argument("--dispatcher", help="worker: the dispatcher's address, grpc://HOST:PORT")
    parser.add_argument("--worker-address", help="worker: the host name trainers reach this worker by "
                                                 "(default localhost: one host only)")
    parser.add_argument("--heartbeat", type=float, help="worker: seconds between heartbeats to the dispatcher")


def _check(args):
    from keras_bert3d.validation import check_int_range, check_positive_number

    check_int_range("port", args.port, 0, 65535)
    other = WORKER_FLAGS if args.role == "dispatcher" else DISPATCHER_FLAGS
    given = [f"--{name.replace('_', '-')}" for name in other if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} do(es) not apply to the {args.role}")
    if args.role == "worker" and args.dispatcher is None:
        raise ValueError("a worker needs --dispatcher grpc://HOST:PORT (what `bert3d data-service dispatcher` "
                         "printed)")
    for name in ("worker_timeout", "heartbeat"):
        if getattr(args, name) is not None:
            check_positive_number(f"--{name.replace('_', '-')}", getattr(args, name))


def _port(server, asked):
    return asked or int(server._address.rsplit(":", 1)[1])  # noqa: SLF001 (TF's bound port, when 0 was asked)


def run(args):
    _check(args)
    from keras_bert3d.data import service

    if args.role == "dispatcher":
        server = service.start_dispatcher(args.port, args.work_dir, args.worker_timeout)
        port = int(server.target.rsplit(":", 1)[1])
        print(f"bert3d data-service: dispatcher listening on grpc://{socket.gethostname()}:{port} "
              f"(port {port}; journal: {args.work_dir or 'none, in memory'})", flush=True)
    else:
        server = service.start_worker(args.dispatcher, args.port, args.worker_address, args.heartbeat)
        host = args.worker_address or "localhost"
        print(f"bert3d data-service: worker listening on grpc://{host}:{_port(server, args.port)} "
              f"for the dispatcher {args.dispatcher}", flush=True)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop()
    print(f"bert3d data-service: {args.role} stopped", flush=True)
    return 0
