"""Training, evaluation, tuning and export scripts of keras_bert3d (run as ``python -m training.<script>``).

train.py (model.fit with the reference recipe), config.py (YAML/JSON configs), recipe.py (optimisers, loss,
metrics), callbacks.py (plateau schedule, best checkpoint, history, resumable backup), pipelines.py (the
tf.data pipelines of a run), distributed.py (strategies and the multi-worker training loop) with
replica_steps.py (its per-replica steps), evaluation.py / evaluate.py (multi-clip testing), tune.py
(KerasTuner) with search_space.py (what it searches), export.py; configs/ holds the paper's settings.
"""
