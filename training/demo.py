"""`python -m training.demo` (`make demo`): BERT pooling against TGAP on the synthetic ordered-events dataset.

The job is `keras_bert3d.training.demo`; this driver hands it the configs beside it (configs/synthetic_*.yaml)
and prints what it found.
"""
import argparse
import os
import sys

from keras_bert3d.training import demo

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m training.demo", description=demo.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="working folder (data, runs, reports)")
    parser.add_argument("--export-dir", default="saved_models", help="where the better model is exported")
    parser.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    parser.add_argument("--videos-per-class", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", help="folder of synthetic_bert.yaml and synthetic_tgap.yaml; default the clone's "
                                          "training/configs")
    return parser


def main(argv=None, configs_dir=CONFIGS):
    """The demo; ``configs_dir`` holds synthetic_bert.yaml and synthetic_tgap.yaml (a clone's training/configs)."""
    from keras_bert3d.cli.evaluate import print_summary
    from keras_bert3d.cli.training_messages import show_training_messages

    args = build_parser().parse_args(argv)
    configs_dir = args.configs or configs_dir
    show_training_messages()
    data_root = os.path.join(args.out, "data", "synthetic")
    runs_dir = os.path.join(args.out, "runs")
    if demo.make_dataset(data_root, args.videos_per_class, args.seed):
        for path in demo.clear_runs(runs_dir):
            print(f"removed {path}: it was trained on the previous dataset")

    results = {}
    for pooling in demo.POOLINGS:
        results[pooling] = demo.train_and_evaluate(pooling, data_root, runs_dir, args.epochs, args.seed, configs_dir)
        print_summary(results[pooling][2])

    print("\nmulti-clip x 10-crop test accuracy on the synthetic ordered-events dataset:")
    for pooling, (run_dir, summary, metrics, minutes) in results.items():
        print(f"{pooling}: top-1 {100 * metrics['top1']:.1f}%  (mean class {100 * metrics['mean_class_accuracy']:.1f}%, "
              f"{metrics['videos']} test videos, trained {minutes:.1f} min, {run_dir})")
    margin = 100 * (results["bert"][2]["top1"] - results["tgap"][2]["top1"])
    print(f"BERT pooling minus TGAP: {margin:+.1f} points of top-1")
    better, path = demo.export_better(results, args.export_dir)
    print(f"exported the {better} model: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
