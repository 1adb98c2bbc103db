"""`bert3d train CONFIG [key=value ...]`: train with the reference recipe; the same command again resumes."""
import argparse
import sys

EXAMPLES = """examples:
  bert3d train training/configs/synthetic_bert.yaml
  bert3d train hmdb51_r2plus1d_32f_bert.yaml data.root=/data/hmdb51 model.weights=ig65m_init.weights.h5
  bert3d train CONFIG train.epochs=10 model.overrides.num_heads=4 --strategy mirrored

Outputs go to <output_dir>/<name>/ (config.yaml, best.keras, last.keras, history.csv, logs/, backup/);
running the same command again resumes an interrupted run. A lock (train.lock) keeps a second process out
of a run folder while a run trains in it."""


def add_arguments(parser):
    from keras_bert3d.training.config import STRATEGIES, describe

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES + "\n\nconfig keys (default: meaning):\n" + describe()
    parser.add_argument("config", help="YAML or JSON config file (e.g. training/configs/*.yaml of a clone)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. train.epochs=10 model.overrides.num_heads=4 data.root=/data")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="shortcut for train.strategy=...")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args):
    from keras_bert3d.training.config_files import load_config

    overrides = list(args.overrides) + ([f"train.strategy={args.strategy}"] if args.strategy else [])
    config = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), end="")
        return 0
    from keras_bert3d.cli.training_messages import show_training_messages
    from keras_bert3d.training.run_lock import RunFolderLocked
    from keras_bert3d.training.strategies import WorkerLostError
    from keras_bert3d.training.train import train

    show_training_messages()
    try:
        train(config)
    except (RunFolderLocked, WorkerLostError) as err:  # another process holds the run; a peer died: one line
        print(f"bert3d train: error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0
