"""The training recipe of keras_bert3d: `bert3d train`, `bert3d evaluate`, `bert3d tune` run these.

Layer: training sits above data, models and serving and below cli. It imports keras_bert3d.data,
keras_bert3d.models, keras_bert3d.serving, keras_bert3d.progress and keras_bert3d.validation (and the
backend helpers); only keras_bert3d.cli imports it. It prints nothing: messages go to the
``keras_bert3d.training`` logger, results are returned, and the commands show both.

- Running a training: train.py (``model.fit`` with the reference recipe, or the custom loop), model_setup.py
  (model, starting weights, frozen backbone, optimiser, compile, precision; shared by train and tune),
  pipelines.py (the tf.data pipelines of a run), run_folder.py (every file name of a run folder, atomic
  writes), callbacks.py (plateau schedule, best checkpoint, history, accumulation reset), backup.py (the
  resumable backup of ``model.fit``).
- Configs: config.py (the schema: keys, defaults, ``STRATEGIES``, validation), config_files.py (YAML/JSON
  files and ``key=value`` overrides).
- Distribution: strategies.py (``train.strategy``), distributed.py (the custom loop for multi-worker and
  mirrored accumulation) with replica_steps.py (its per-replica steps).
- Evaluation: evaluate.py (a run or a .keras file, one or two streams), streams.py (one model over the test
  subset, two-stream fusion), evaluation.py (the arithmetic and the report files).
- Tuning: tune.py (the KerasTuner search and its results), hypermodel.py (the hypermodel and the tuners),
  search_space.py (what it searches).
- demo.py: the job of ``make demo``. A clone's top-level ``training/`` holds the paper's configs and thin
  drivers (``python -m training.train`` = ``bert3d train``).
"""
