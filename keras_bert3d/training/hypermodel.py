"""The KerasTuner side of `bert3d tune`: the hypermodel (the config's model with a trial's values, set up and
compiled as `bert3d train` does it, keras_bert3d.training.model_setup) and the tuner (`TUNERS`, `OBJECTIVES`).
"""
import copy

from keras_bert3d.training import pipelines
from keras_bert3d.training.search_space import BERT_KEYS, define
from keras_bert3d.validation import check_choice

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVES = {"val_top1": "max", "val_top5": "max", "val_loss": "min"}


def with_values(model_config, values):
    """The ``model`` config section with the BERT values applied (to the preset overrides or the config)."""
    model_config = copy.deepcopy(model_config)
    bert = {k: v for k, v in values.items() if k in BERT_KEYS}
    if model_config["preset"] is not None:
        model_config["overrides"].update(bert)
    else:
        inner = model_config["config"]
        inner = inner["config"] if "class_name" in inner else inner
        inner.update(bert)
    if "freeze_backbone" in values:
        model_config["freeze_backbone"] = bool(values["freeze_backbone"])
    return model_config


def _import_keras_tuner():
    import keras_tuner

    return keras_tuner


def make_hypermodel(config, space, num_classes, optimizer, one_hot=False, counter=None):
    """A ``keras_tuner.HyperModel`` whose ``build(hp)`` makes and compiles the trial's model with the
    recipe ``optimizer`` (``"adamw"`` or ``"sgd"``)."""
    keras_tuner = _import_keras_tuner()

    class BERT3DHyperModel(keras_tuner.HyperModel):
        """Builds the config's model with the trial's values and compiles it with the training recipe."""

        def build(self, hp):
            import keras

            from keras_bert3d.training import model_setup

            values = {name: define(hp, name, spec) for name, spec in space.items()}
            tc = config["train"]
            keras.utils.set_random_seed(tc["seed"])  # every trial starts from the same draws
            model = model_setup.initial_model(with_values(config["model"], values), num_classes)
            return model_setup.compile_model(model, tc, num_classes, one_hot, optimizer=optimizer,
                                             learning_rate=values.get("learning_rate"),
                                             weight_decay=values.get("weight_decay"))

        def fit(self, hp, model, *args, callbacks=None, **kwargs):
            from keras_bert3d.training.bad_video_report import BadVideoReport
            from keras_bert3d.training import callbacks as cb

            tc = config["train"]
            # Made here, not passed to search(): KerasTuner deep-copies search callbacks (a counter holds a lock).
            extra = [cb.EpochAccumulationReset(),
                     cb.ReferenceReduceLROnPlateau("val_loss", tc["plateau_factor"], tc["plateau_patience"],
                                                   verbose=0)]
            if counter is not None:
                extra.append(BadVideoReport(counter, verbose=1 if tc["verbose"] else 0))
            return pipelines.fit(model, *args, callbacks=list(callbacks or []) + extra, **kwargs)

    return BERT3DHyperModel(name="keras_bert3d")


def make_tuner(name, hypermodel, objective, directory, project_name, epochs, max_trials=10, factor=3,
               hyperband_iterations=1, executions_per_trial=1, seed=None, overwrite=False, strategy=None):
    """The KerasTuner tuner ``name`` (``hyperband``, ``random``, ``bayesian``)."""
    keras_tuner = _import_keras_tuner()
    check_choice("tuner", name, TUNERS)
    check_choice("objective", objective, sorted(OBJECTIVES))
    common = dict(objective=keras_tuner.Objective(objective, OBJECTIVES[objective]), directory=directory,
                  project_name=project_name, seed=seed, overwrite=overwrite, distribution_strategy=strategy,
                  executions_per_trial=executions_per_trial)
    if name == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=epochs, factor=factor,
                                     hyperband_iterations=hyperband_iterations, **common)
    if name == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    try:
        import scipy  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as err:
        raise ValueError("--tuner bayesian (KerasTuner's Gaussian-process oracle) needs scipy and scikit-learn: "
                         f"pip install scipy scikit-learn ({err})") from err
    return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
