"""The results of a `bert3d tune` search: the leaderboard (rows, their text, ``leaderboard.csv``) and the best
trial as a training config (``best_config.yaml``, for `bert3d train`)."""
import copy
import csv

from keras_bert3d.training.config import validate_config
from keras_bert3d.training.hypermodel import with_values
from keras_bert3d.training.search_space import TRAIN_KEYS


def leaderboard(tuner, space, epochs=None):
    """Completed trials, best first: ``[{"rank", "trial", "score", "epochs", <hyperparameters>}]`` (epochs: the
    trial's own under Hyperband, else ``epochs``)."""
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    rows = []
    for rank, trial in enumerate(trials, start=1):
        values = trial.hyperparameters.values
        row = {"rank": rank, "trial": trial.trial_id, "score": trial.score,
               "epochs": values.get("tuner/epochs", epochs if epochs is not None else "")}
        row.update({name: values.get(name, "") for name in space})
        rows.append(row)
    return rows


def format_leaderboard(rows, objective):
    if not rows:
        return "no completed trial"
    header = ["rank", "trial", objective, "epochs"] + [k for k in rows[0] if k not in ("rank", "trial", "score",
                                                                                          "epochs")]
    table = [[str(r["rank"]), str(r["trial"]), show(r["score"]), str(r["epochs"])]
             + [show(r[k]) for k in header[4:]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def show(value):
    """A leaderboard cell: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_leaderboard(rows, path):
    if not rows:
        return None
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def best_config(config, values):
    """The training config of the best trial: the searched values written into ``config``."""
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    best = copy.deepcopy(config)
    best["name"] = f"{config['name']}_tuned"
    best["model"] = with_values(config["model"], values)
    for key in TRAIN_KEYS:
        if key in values:
            best["train"][key] = float(values[key])
    return validate_config(best)
