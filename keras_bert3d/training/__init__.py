"""The training recipe of keras_bert3d: `bert3d train`, `bert3d evaluate`, `bert3d tune` run these.

train.py (model.fit with the reference recipe), config.py (YAML/JSON configs), the recipe (keras_bert3d.models.recipe: optimisers, loss,
metrics), callbacks.py (plateau schedule, best checkpoint, history, resumable backup), pipelines.py (the
tf.data pipelines of a run), distributed.py (strategies and the multi-worker training loop) with
replica_steps.py (its per-replica steps), evaluation.py / evaluate.py (multi-clip testing), tune.py
(KerasTuner) with search_space.py (what it searches), demo.py (`make demo`). A clone's top-level
``training/`` holds the paper's configs and thin drivers (``python -m training.train`` = ``bert3d train``).
"""
