"""`bert3d tune CONFIG`: search the BERT head and the recipe with KerasTuner (Hyperband by default)."""
import argparse

EXAMPLES = """examples:
  bert3d tune hmdb51_r2plus1d_32f_bert.yaml --epochs 9                                    # Hyperband
  bert3d tune CONFIG --tuner random --max-trials 20 --epochs 5
  bert3d tune CONFIG --tuner bayesian --only learning_rate,weight_decay --max-trials 10   # needs [tune]

Prints the leaderboard, writes leaderboard.csv and best_config.yaml (a training config for `bert3d train`)
into the tuner's folder; running the same command again continues the search."""


def add_arguments(parser):
    from keras_bert3d.training.config import STRATEGIES
    from keras_bert3d.training.search_space import SEARCH_SPACE
    from keras_bert3d.training.hypermodel import OBJECTIVES, TUNERS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES + "\n\nDefault search space:\n" + "\n".join(
        f"  {k}: {v}" for k, v in SEARCH_SPACE.items())
    parser.add_argument("config", help="training config (YAML or JSON)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.steps_per_epoch=50 data.root=/data")
    parser.add_argument("--tuner", choices=TUNERS, default="hyperband", help="search algorithm; default hyperband")
    parser.add_argument("--epochs", type=_at_least(1), help="epochs per trial (Hyperband: max_epochs); "
                                                            "default train.epochs")
    parser.add_argument("--max-trials", type=_at_least(1), default=10,
                        help="trials of random/bayesian search; default 10")
    parser.add_argument("--factor", type=_at_least(2), default=3, help="Hyperband reduction factor; default 3")
    parser.add_argument("--hyperband-iterations", type=_at_least(1), default=1, help="Hyperband sweeps; default 1")
    parser.add_argument("--executions-per-trial", type=_at_least(1), default=1,
                        help="fits averaged per trial; default 1")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="val_top1",
                        help="what the search optimises; default val_top1 (max)")
    parser.add_argument("--space", help="YAML file: name -> {values: [...]} | {min, max, step, sampling} | a "
                                        "fixed value | null (not searched)")
    parser.add_argument("--only", help="comma-separated names: search these only")
    parser.add_argument("--directory", help="the tuner's folder; default <output_dir>/<name>/tune")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of continuing the search")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="shortcut for train.strategy=...")


def _at_least(low):
    def parse(value):
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; received {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}; received {number}")
        return number

    return parse


def run(args):
    from keras_bert3d.training.config_files import load_config
    from keras_bert3d.cli.training_messages import show_training_messages
    from keras_bert3d.training.tune import format_leaderboard, show, tune

    overrides = list(args.overrides) + ([f"train.strategy={args.strategy}"] if args.strategy else [])
    config = load_config(args.config, overrides)
    show_training_messages()
    result = tune(config, args.tuner, args.epochs, args.max_trials, args.factor, args.hyperband_iterations,
                  args.executions_per_trial, args.objective, args.space, args.only.split(",") if args.only else None,
                  args.directory, args.overwrite)
    rows = result["leaderboard"]
    print(format_leaderboard(rows, args.objective), flush=True)
    print(f"Best trial {rows[0]['trial']}: {args.objective} {show(rows[0]['score'])}; its training config: "
          f"{result['best_config']}", flush=True)
    return 0
