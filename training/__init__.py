"""Training, evaluation, tuning and export scripts of keras_bert3d (run as ``python -m training.<script>``).

train.py (model.fit with the reference recipe), config.py (YAML/JSON configs), recipe.py (optimisers, loss,
metrics, callbacks), distributed.py (strategies and the multi-worker training loop), evaluation.py /
evaluate.py (multi-clip testing), tune.py (KerasTuner), export.py; configs/ holds the paper's settings.
"""
