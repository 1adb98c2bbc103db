"""Training configs: the schema (every key, its default and meaning) and its validation.

A config has four sections (every key and its default is in `DEFAULTS`; `DESCRIPTIONS` says what each
means). Unknown keys are errors, and so are values of the wrong type: the message names the dotted key.

    name, output_dir                  the run goes to <output_dir>/<name>/
    model.*                           a preset (or a VideoClassifier config), starting weights, freezing
    data.*                            which dataset, split and subsets, the batch size, mixup/cutmix
    train.*                           the recipe (optimiser, accumulation, plateau schedule), precision,
                                      distribution strategy, seed, backups

`validate_config` checks a dict and completes it with the defaults; `describe` is the text of ``--help``.
Reading and writing config files (YAML/JSON plus ``key=value`` overrides) is keras_bert3d.training.config_files.
"""
import copy
import json

from keras_bert3d.validation import check_file_name, is_int, is_number

OPTIMIZERS = ("auto", "adamw", "sgd")
PRECISIONS = (None, "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")
DATASETS = ("ucf101", "hmdb51", "kinetics", "frames", "folders", "csv")
AUGMENTS = ("auto", "host", "device")  # data.augment (keras_bert3d.training.model_setup.resolve_augment)

DEFAULTS = {
    "name": "run",
    "output_dir": "runs",
    "model": {
        "preset": None,
        "num_classes": None,
        "overrides": {},
        "config": None,
        "weights": None,
        "freeze_backbone": False,
    },
    "data": {
        "dataset": None,
        "root": None,
        "annotations": None,
        "classes": None,
        "split": 1,
        "train_subset": "train",
        "val_subset": "test",
        "source": "auto",
        "augment": "auto",
        "tfrecord": None,
        "val_tfrecord": None,
        "batch_size": 8,
        "strict": False,
        "mixup": 0.0,
        "cutmix": 0.0,
    },
    "train": {
        "optimizer": "auto",
        "learning_rate": None,
        "weight_decay": 1.0e-3,
        "decay_norms_and_biases": True,
        "momentum": 0.9,
        "dampening": 0.9,
        "gradient_accumulation_steps": 16,
        "epochs": 200,
        "plateau_patience": 5,
        "plateau_factor": 0.1,
        "mixed_precision": None,
        "jit_compile": "auto",
        "strategy": "default",
        "seed": 0,
        "deterministic": False,
        "steps_per_epoch": None,
        "validation_steps": None,
        "backup_freq": 100,
        "verbose": 1,
    },
}

DESCRIPTIONS = {
    "name": "run name (letters, digits, '.', '_', '-'); outputs go to <output_dir>/<name>/",
    "output_dir": "folder holding the runs",
    "model.preset": "a keras_bert3d preset name (bert3d models lists them)",
    "model.num_classes": "classes of the head; null: the training index's",
    "model.overrides": "build_model overrides (num_frames, image_size, num_heads, stage_blocks, ...)",
    "model.config": "instead of a preset: a VideoClassifier config (model.get_config(), or its serialized form)",
    "model.weights": "starting weights: .weights.h5 (bert3d convert), .keras, or a reference .pth/.npz",
    "model.freeze_backbone": "train only the pooling and the head",
    "data.dataset": "ucf101|hmdb51|kinetics|frames|folders|csv (keras_bert3d.data.indexes.build_index)",
    "data.root": "the dataset folder",
    "data.annotations": "annotation folder or file (null: found under root)",
    "data.classes": "class order for kinetics/frames (a list or a file)",
    "data.split": "split 1, 2 or 3 (UCF101, HMDB51, frames)",
    "data.train_subset": "subset trained on",
    "data.val_subset": "subset validated on each epoch (the reference validates on the test list)",
    "data.source": "auto|video|frames|tfrecord",
    "data.augment": "auto (device when the backend sees a GPU/TPU, else host) | host (crop, flip, normalise on the "
                    "CPU) | device (uint8 frames to the accelerator, the same batches; model.fit, no mixup/cutmix)",
    "data.tfrecord": "training shards (a glob or folder) when source=tfrecord",
    "data.val_tfrecord": "validation shards when source=tfrecord",
    "data.batch_size": "clips per step over all replicas (reference 8)",
    "data.strict": "stop on the first undecodable video instead of skipping it",
    "data.mixup": "mixup Beta alpha (0: off); labels become one-hot",
    "data.cutmix": "cutmix Beta alpha (0: off)",
    "train.optimizer": "auto (the preset's: adamw for BERT models, sgd for the baselines) | adamw | sgd",
    "train.learning_rate": "null: the recipe's (adamw 1e-5, sgd 1e-2)",
    "train.weight_decay": "AdamW decoupled decay / SGD L2 coefficient (reference 1e-3)",
    "train.decay_norms_and_biases": "true (reference): decay every weight; false: not norms, biases, CLS, positions",
    "train.momentum": "SGD momentum (reference 0.9)",
    "train.dampening": "SGD dampening (reference 0.9)",
    "train.gradient_accumulation_steps": "batches per optimiser step (reference 16: 8 x 16 = 128 clips)",
    "train.epochs": "epochs (reference 200)",
    "train.plateau_patience": "epochs without val-loss improvement before the LR drops (reference 5)",
    "train.plateau_factor": "LR multiplier on a plateau (reference 0.1)",
    "train.mixed_precision": "null | mixed_float16 (GPU) | mixed_bfloat16",
    "train.jit_compile": "auto (Keras' rule: XLA on JAX and on a TF accelerator, not on a TF CPU or torch) | true | false",
    "train.strategy": "default | mirrored (all local GPUs) | multi_worker (TF_CONFIG; custom loop)",
    "train.seed": "seeds weights, dropout, clip sampling, augmentation and order",
    "train.deterministic": "also make TF ops deterministic (tf.config.experimental.enable_op_determinism)",
    "train.steps_per_epoch": "null: one pass over the training index",
    "train.validation_steps": "null: the whole validation subset",
    "train.backup_freq": "back up the training state every N steps (and every epoch end), or 'epoch'",
    "train.verbose": "0 silent, 1 progress bar, 2 one line per epoch",
}

_REQUIRED = ("data.dataset", "data.root")

# The `train` keys a resumed run may change (keras_bert3d.training.run_folder.check_resume): how long to train
# (``epochs``, to extend a run), how often to back up, what to print, and execution choices that change at most
# the rounding, as resuming on another machine would (``jit_compile``, ``deterministic``). Every other key
# changes the run's numbers and is refused: the optimiser and its recipe (``optimizer``, ``learning_rate``,
# ``weight_decay``, ``decay_norms_and_biases``, ``momentum``, ``dampening``), ``gradient_accumulation_steps``,
# the plateau rule, ``seed``, ``steps_per_epoch`` (where epochs end), ``validation_steps`` (the plateau rule and
# best.keras follow the validation), ``mixed_precision``, and ``strategy`` (which also picks the backup format).
# Every key of the `model` and `data` sections is refused too.
RESUMABLE_TRAIN_KEYS = ("epochs", "backup_freq", "verbose", "jit_compile", "deterministic")


_SECTIONS = ("model", "data", "train")


def _flat(tree):
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}`` (sections only; values stay whole)."""
    out = {}
    for key, value in tree.items():
        if key in _SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{sub}": sub_value for sub, sub_value in value.items()})
        else:
            out[key] = value
    return out


def _fail(key, value, expected):
    raise ValueError(f"config key `{key}` must be {expected}; received {key}={value!r}")


def _check_value(key, value):
    from keras_bert3d.data.pipeline import SOURCES  # lazily: the data pipeline imports TensorFlow

    default = _flat(DEFAULTS)[key]
    choices = {"train.optimizer": OPTIMIZERS, "train.mixed_precision": PRECISIONS,
               "train.strategy": STRATEGIES, "data.source": SOURCES, "data.dataset": DATASETS,
               "data.augment": AUGMENTS}
    if key in choices:
        if value not in choices[key] and not (key == "data.dataset" and value is None):
            _fail(key, value, f"one of {list(choices[key])}")
        return
    nullable = default is None or key in ("train.learning_rate", "train.steps_per_epoch",
                                          "train.validation_steps")
    if value is None and nullable:
        return
    if key == "name":
        check_file_name("name", value)
    elif key in ("model.overrides",):
        if not isinstance(value, dict):
            _fail(key, value, "a mapping")
    elif key == "model.config":
        if not isinstance(value, dict):
            _fail(key, value, "a mapping (a VideoClassifier config) or null")
    elif key == "data.classes":
        if not isinstance(value, (str, list)):
            _fail(key, value, "a list of class names, a file, or null")
    elif key == "train.backup_freq":
        if value != "epoch" and not (is_int(value) and value >= 1):
            _fail(key, value, "'epoch' or an integer >= 1")
    elif key == "train.jit_compile":
        if value != "auto" and not isinstance(value, bool):
            _fail(key, value, "'auto', true or false")
    elif key == "train.verbose":
        if value not in (0, 1, 2):
            _fail(key, value, "0, 1 or 2")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            _fail(key, value, "true or false")
    elif key in ("model.num_classes", "data.split", "data.batch_size", "train.gradient_accumulation_steps",
                 "train.epochs", "train.steps_per_epoch", "train.validation_steps"):
        if not is_int(value) or value < (0 if key == "train.epochs" else 1):
            _fail(key, value, "a positive integer" + (" or null" if nullable else ""))
    elif key == "train.plateau_patience" or key == "train.seed":
        if not is_int(value) or value < 0:
            _fail(key, value, "an integer >= 0")
    elif is_number(default) or key == "train.learning_rate":
        if not is_number(value) or value < 0:
            _fail(key, value, "a number >= 0" + (" or null" if nullable else ""))
        if key in ("train.plateau_factor", "train.momentum", "train.dampening") and value > 1:
            _fail(key, value, "a number in [0, 1]")
    elif not isinstance(value, str):
        _fail(key, value, "a string" + (" or null" if nullable else ""))


def validate_config(config):
    """Checks ``config`` (a full or partial dict) and returns it completed with the defaults.

    Raises ValueError naming the dotted key for unknown keys, wrong types, missing required keys and
    contradictions (both or neither of ``model.preset`` / ``model.config``).
    """
    if not isinstance(config, dict):
        raise ValueError(f"a config must be a mapping; received {type(config).__name__}")
    merged = copy.deepcopy(DEFAULTS)
    known = _flat(DEFAULTS)
    for key, value in config.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"config key `{key}` must be a mapping; received {key}={value!r}")
            for sub, sub_value in value.items():
                dotted = f"{key}.{sub}"
                if dotted not in known:
                    raise ValueError(f"unknown config key `{dotted}`; known keys of `{key}`: {sorted(DEFAULTS[key])}")
                merged[key][sub] = copy.deepcopy(sub_value)
        elif key in known:
            merged[key] = copy.deepcopy(value)
        else:
            raise ValueError(f"unknown config key `{key}`; known top-level keys: {sorted(DEFAULTS)}")
    flat = _flat(merged)
    for key, value in flat.items():
        _check_value(key, value)
    for key in _REQUIRED:
        if flat[key] is None:
            raise ValueError(f"config key `{key}` is required; received {key}=None")
    model = merged["model"]
    if (model["preset"] is None) == (model["config"] is None):
        raise ValueError("give exactly one of `model.preset` and `model.config`; received "
                         f"model.preset={model['preset']!r}, model.config="
                         f"{'{...}' if model['config'] is not None else None}")
    if model["config"] is not None and model["overrides"]:
        raise ValueError("`model.overrides` applies to `model.preset`; edit `model.config` instead; received "
                         f"model.overrides={model['overrides']!r}")
    data = merged["data"]
    if data["source"] == "tfrecord" and not data["tfrecord"]:
        raise ValueError("data.source='tfrecord' needs `data.tfrecord` (training shards); received "
                         "data.tfrecord=None")
    return merged


def resume_conflicts(previous, config):
    """The dotted keys of the `model`, `data` and `train` sections where ``config`` differs from ``previous``
    (the config of the run whose backup would be resumed), but for `RESUMABLE_TRAIN_KEYS`: a list of
    ``(key, previous value, new value)``."""
    old, new = _flat({k: previous.get(k, {}) for k in _SECTIONS}), _flat({k: config[k] for k in _SECTIONS})
    old.setdefault("data.augment", "host")  # a run from before data.augment augmented on the host
    resumable = {f"train.{key}" for key in RESUMABLE_TRAIN_KEYS}
    return [(key, old.get(key), new.get(key)) for key in dict.fromkeys([*old, *new])
            if key not in resumable and old.get(key) != new.get(key)]


def describe():
    """Every key, its default and meaning: the text of ``--help``."""
    flat = _flat(DEFAULTS)
    width = max(len(k) for k in flat)
    return "\n".join(f"  {k:<{width}}  {json.dumps(flat[k])}: {DESCRIPTIONS[k]}" for k in flat)
