"""Training memory and step time against the reference PyTorch code, run alternately in one run.

    python bench/bench_reference.py /path/to/LateTemporalModeling3DCNN --batch-sizes 1,2,4
    python bench/bench_reference.py REF --batch-sizes 2 --keras-overrides '{"remat": true}' --rounds 2

``REF`` is the authors' repository (github.com/artest08/LateTemporalModeling3DCNN): a checkout, or a bare
git directory (then ``git archive`` unpacks the model code it needs into a temporary folder). Nothing
of it is copied into this project: the child process imports ``models.rgb_r2plus1d`` from there, builds
``rgb_r2plus1d_32f_34_bert10(num_classes, 32)`` with ``pretrained=False`` (the IG65M download is replaced
by random weights, which changes no shape and no memory) and trains it as ``two_stream_bert2.py`` does: its
``opt.AdamW`` (lr 1e-5, weight decay 1e-3), ``CrossEntropyLoss`` on the logits, ``model.train()``, one
``backward`` and ``step`` per batch, on a repeated random batch ``(B, 3, 32, 112, 112)`` on the CPU (torch's
own thread count; without a GPU its ``.cuda()`` and ``.to('cuda')`` leave the tensors on the CPU). The Keras side is ``bench/bench_train.py``'s child for ``rgb_r2plus1d_32f_34_bert10``
(``--keras-overrides`` go to ``build_model``). For each round and batch size the two run one after the
other, each in its own process under the same resident-memory watchdog; the table gives both peaks
(``ru_maxrss``), the step times (median of ``--steps`` after ``--warmup``) and the Keras / reference ratios,
and a least-squares line per side over the batch sizes splits the baseline from the per-clip slope.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# What the R(2+1)D-BERT model and its optimiser import (a mirror may lack the repository's large files).
REFERENCE_PATHS = ("models/rgb_r2plus1d.py", "models/r2plus1d", "models/BERT", "models/representation_flow", "opt")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_train  # noqa: E402  (the watchdog, the line fit and the Keras child)


def _unpack(reference):
    """A folder holding the reference's ``models/`` and ``opt/``: ``reference`` itself or a git archive of it."""
    if os.path.isdir(os.path.join(reference, "models")):
        return reference
    folder = tempfile.mkdtemp(prefix="bert3d_reference_")
    archive = subprocess.run(["git", f"--git-dir={reference}", "archive", "HEAD"] + list(REFERENCE_PATHS),
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def _torch_child(args):
    """One reference training configuration in this process; prints a JSON line."""
    import importlib
    import types

    import torch

    # The reference puts its CLS token, positions and masks on the GPU (`.cuda()`, `.to(device='cuda')`);
    # without one they stay on the CPU.
    if not torch.cuda.is_available():
        to = torch.Tensor.to

        def cpu(value):
            return "cpu" if str(value).startswith("cuda") else value

        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.Tensor.to = lambda self, *args, **kwargs: to(self, *map(cpu, args),
                                                             **{k: cpu(v) for k, v in kwargs.items()})
    # A bare `models` package: its __init__ imports every family (SlowFast needs more packages).
    package = types.ModuleType("models")
    package.__path__ = [os.path.join(args.reference, "models")]
    sys.modules["models"] = package
    sys.path.insert(0, args.reference)
    module = importlib.import_module("models.rgb_r2plus1d")
    builder = module.r2plus1d_34_32_ig65m
    module.r2plus1d_34_32_ig65m = lambda n, pretrained=False, progress=False: builder(n, pretrained=False)
    adamw = importlib.import_module("opt.AdamW").AdamW

    torch.manual_seed(0)
    model = module.rgb_r2plus1d_32f_34_bert10(args.num_classes, 32)
    model.train()
    optimizer = adamw(model.parameters(), lr=1e-5, weight_decay=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    clips = torch.randn(args.batch_size, 3, 32, 112, 112)
    targets = torch.randint(0, args.num_classes, (args.batch_size,))
    times, cpu = [], []
    for _ in range(args.warmup + args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        output = model(clips)[0]
        criterion(output, targets).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    timed = times[args.warmup:]
    print(json.dumps({"batch_size": args.batch_size, "step_s": statistics.median(timed),
                      "cpu_s_per_step": statistics.median(cpu[args.warmup:]), "first_step_s": times[0],
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "params": sum(p.numel() for p in model.parameters()), "load_average": os.getloadavg()[0]}),
          flush=True)


def _measure(command, max_rss_gib):
    out, err, rc, note, polled = bench_train._run_child(command, max_rss_gib)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if rc or not lines:
        return None, note or (err.strip().splitlines() or [f"exit code {rc}"])[-1][:300]
    return json.loads(lines[-1]), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="the reference repository: a checkout or a bare git directory")
    parser.add_argument("--batch-sizes", default="1,2")
    parser.add_argument("--num-classes", type=int, default=51)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keras-overrides", default="{}", help="build_model overrides for the Keras side (JSON)")
    parser.add_argument("--skip-keras", action="store_true", help="measure the reference only")
    parser.add_argument("--max-rss-gb", type=float, default=12.0, help="watchdog: kill a child past this (GiB)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_child:
        return _torch_child(args)

    reference = _unpack(os.path.abspath(args.reference))
    rows, notes = [], []
    for round_ in range(args.rounds):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            sides = [("reference", [sys.executable, os.path.abspath(__file__), reference, "--torch-child",
                                    "--batch-size", str(batch), "--num-classes", str(args.num_classes),
                                    "--steps", str(args.steps), "--warmup", str(args.warmup)])]
            if not args.skip_keras:
                sides.append(("keras", [sys.executable, bench_train.__file__, "--one", "--repo", bench_train.REPO,
                                        "--overrides", args.keras_overrides, "--batch-size", str(batch),
                                        "--num-classes", str(args.num_classes), "--steps", str(args.steps),
                                        "--warmup", str(args.warmup)]))
            for side, command in sides:
                row, failure = _measure(command, args.max_rss_gb)
                if failure:
                    notes.append(f"{side}, batch {batch}, round {round_}: failed ({failure})")
                    print("  " + notes[-1], file=sys.stderr, flush=True)
                    continue
                rows.append({"side": side, "round": round_, **row})
                print(f"  done: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)

    print(f"\nrgb_r2plus1d_32f_34_bert10 training, 32x112x112, AdamW, CPU ({os.cpu_count()} cores), "
          f"Keras overrides {args.keras_overrides}, {args.steps} timed steps after {args.warmup}")
    print("| round | batch | reference peak (GiB) | Keras peak (GiB) | Keras / reference | reference step (s) | "
          "Keras step (s) | Keras / reference | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    by = {(r["side"], r["round"], r["batch_size"]): r for r in rows}
    for (side, round_, batch), ref in sorted(by.items()):
        if side != "reference":
            continue
        k = by.get(("keras", round_, batch))
        kp = f"{k['peak_rss_gib']:.2f} | {k['peak_rss_gib'] / ref['peak_rss_gib']:.2f}" if k else "- | -"
        ks = f"{k['step_s']:.1f} | {k['step_s'] / ref['step_s']:.2f}" if k else "- | -"
        print(f"| {round_} | {batch} | {ref['peak_rss_gib']:.2f} | {kp} | {ref['step_s']:.1f} | {ks} | "
              f"{ref['load_average']:.1f} |")
    for side in ("reference", "keras"):
        points = [(r["batch_size"], r["peak_rss_gib"]) for r in rows if r["side"] == side]
        line = bench_train._fit_line(points)
        if line:
            print(f"- {side}: peak = {line[0]:.2f} GiB + {line[1]:.3f} GiB per clip")
    bench_train.print_notes_and_json(args.json, rows, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
