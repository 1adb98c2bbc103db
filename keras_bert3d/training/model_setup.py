"""The set-up of a training run, one for `bert3d train` (`model.fit` and the custom loop) and `bert3d tune`.

`load_indexes` reads the train and validation subsets and checks the class count; `resolve_recipe` fills in
the config as run (class count, where augmentation runs, optimiser, learning rate); `initial_model` builds the
classifier from
``model.preset`` (+ overrides) or ``model.config``, loads its starting weights and freezes its backbone if
asked; `compile_model` compiles it with the recipe of keras_bert3d.models.recipe (optimiser, loss, metrics);
`precision` sets the mixed-precision policy of a run and puts the previous one back.
"""
import contextlib
import logging
import os

from keras_bert3d.training.config import validate_config
from keras_bert3d.training.pipelines import build_indexes

log = logging.getLogger(__name__)


def model_preprocessing(model_config):
    """The preprocessing record of the configured model, before building it."""
    if model_config["preset"] is not None:
        from keras_bert3d.models.builder import resolve_preset

        return resolve_preset(model_config["preset"], **model_config["overrides"])[2]["preprocessing"]
    config = model_config["config"]
    config = config.get("config", config) if "class_name" in config else config
    if not config.get("preprocessing"):
        raise ValueError("model.config has no `preprocessing` record; the pipeline needs it")
    return config["preprocessing"]


def build_classifier(model_config, num_classes):
    """A VideoClassifier from ``model.preset`` (+ overrides) or ``model.config``."""
    import keras

    from keras_bert3d.models.builder import build_model
    from keras_bert3d.models.video_classifier import VideoClassifier

    if model_config["preset"] is not None:
        return build_model(model_config["preset"], num_classes, **model_config["overrides"])
    config = dict(model_config["config"])
    if "class_name" in config:
        model = keras.saving.deserialize_keras_object(config)
    else:
        model = VideoClassifier.from_config(config)
    if model.num_classes != num_classes:
        raise ValueError(f"model.config has {model.num_classes} classes; the data has {num_classes}")
    return model


def default_optimizer(model_config):
    """The preset's recipe (``"adamw"`` for BERT models, ``"sgd"`` for the baselines, as the reference);
    for a ``model.config``: its ``recipe``, else the registry's rule (adamw with BERT pooling, else sgd), as
    `VideoClassifier.recipe` reads it."""
    if model_config["preset"] is not None:
        from keras_bert3d.models.builder import get_preset

        return get_preset(model_config["preset"])["optimizer"]
    from keras_bert3d.presets.registry import reference_recipe

    config = model_config["config"]
    config = config.get("config", config) if "class_name" in config else config
    return config.get("recipe") or reference_recipe(config.get("pooling", "bert"))


def load_starting_weights(model, path):
    """``.weights.h5`` / ``.keras`` (Keras) or a reference ``.pth``/``.tar``/``.npz`` (converted on the fly)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model.weights not found: {path}")
    if path.endswith((".weights.h5", ".keras")):
        model.load_weights(path)
        return f"loaded {path}"
    from keras_bert3d.convert.checkpoint import load_reference_weights, read_state_dict

    report = load_reference_weights(model, read_state_dict(path))
    return (f"loaded {len(report.loaded)} reference tensors from {path}; {len(report.missing)} missing (kept as "
            f"initialised), {len(report.unexpected)} unexpected")


def load_indexes(config):
    """``(train index, validation index, num_classes)`` of the config's subsets; ``model.num_classes``, when
    set, must be the training index's."""
    data = config["data"]
    modality = model_preprocessing(config["model"])["modality"]
    index = build_indexes(data)
    train_index, val_index = index(data["train_subset"], modality), index(data["val_subset"], modality)
    num_classes = config["model"]["num_classes"] or train_index.num_classes
    if num_classes != train_index.num_classes:
        raise ValueError(f"model.num_classes={num_classes} but the training index has {train_index.num_classes} "
                         "classes")
    return train_index, val_index, num_classes


def resolve_augment(config):
    """``data.augment`` as run: ``"host"`` or ``"device"``. ``auto`` is device when the Keras backend sees an
    accelerator (`keras_bert3d.backend.accelerator_visible`), unless mixup/cutmix are on (they mix normalised
    clips on the host); an explicit ``device`` with mixup/cutmix is an error naming the key."""
    from keras_bert3d import backend

    data = config["data"]
    mixing = bool(data["mixup"] or data["cutmix"])
    if data["augment"] == "auto":
        return "device" if not mixing and backend.accelerator_visible() else "host"
    if data["augment"] == "device" and mixing:
        raise ValueError("config key `data.augment` cannot be 'device' with mixup/cutmix (they mix normalised clips "
                         f"on the host); received data.augment='device', data.mixup={data['mixup']}, "
                         f"data.cutmix={data['cutmix']} (use host or auto)")
    return data["augment"]


def resolve_recipe(config, num_classes):
    """The config as run: the class count, ``data.augment`` (`resolve_augment`), the optimiser and learning
    rate filled in."""
    from keras_bert3d.models import recipe

    config = validate_config(config)
    config["model"]["num_classes"] = num_classes
    config["data"]["augment"] = resolve_augment(config)
    if config["train"]["optimizer"] == "auto":
        config["train"]["optimizer"] = default_optimizer(config["model"])
    optimizer = config["train"]["optimizer"]
    if config["train"]["learning_rate"] is None:
        config["train"]["learning_rate"] = recipe.RECIPES[optimizer]["learning_rate"]
    return config


def initial_model(model_config, num_classes, verbose=0):
    """The classifier with its starting weights, backbone frozen if asked (call inside the strategy scope);
    with ``verbose``, what the weights loaded is logged."""
    model = build_classifier(model_config, num_classes)
    if model_config["weights"]:
        message = load_starting_weights(model, model_config["weights"])
        if verbose:
            log.info(message)
    if model_config["freeze_backbone"]:
        model.backbone.trainable = False
    return model


def make_optimizer(model, train_config, optimizer=None, learning_rate=None, weight_decay=None):
    """The recipe optimiser of the ``train`` section for ``model``; ``optimizer``, ``learning_rate`` and
    ``weight_decay`` (a tuning trial's values), when given, replace the section's."""
    from keras_bert3d.models import recipe

    tc = train_config
    return recipe.make_optimizer(
        optimizer or tc["optimizer"], model, tc["learning_rate"] if learning_rate is None else learning_rate,
        tc["weight_decay"] if weight_decay is None else weight_decay, tc["decay_norms_and_biases"],
        tc["gradient_accumulation_steps"], tc["momentum"], tc["dampening"])


def compile_model(model, train_config, num_classes, one_hot, **optimizer_values):
    """``model`` compiled with the recipe: `make_optimizer` (``optimizer_values``: its overrides), the
    cross-entropy (one-hot labels with mixup/cutmix) and top-1/top-5."""
    from keras_bert3d.models import recipe

    model.compile(optimizer=make_optimizer(model, train_config, **optimizer_values), loss=recipe.make_loss(one_hot),
                  metrics=recipe.make_metrics(num_classes, one_hot), jit_compile=train_config["jit_compile"])
    return model


@contextlib.contextmanager
def precision(mixed_precision):
    """Runs the block under the ``train.mixed_precision`` policy (None: the current one), then puts the
    previous policy back."""
    import keras

    previous_policy = keras.config.dtype_policy()
    try:
        if mixed_precision:
            keras.config.set_dtype_policy(mixed_precision)
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)
