"""Optimizers with the reference's (torch's) update rules. Layer: below models (the compile defaults of
`keras_bert3d.models.recipe` use them); imports nothing of keras_bert3d."""
from keras_bert3d.optimizers.reference_adamw import ReferenceAdamW
from keras_bert3d.optimizers.reference_sgd import ReferenceSGD

__all__ = ["ReferenceAdamW", "ReferenceSGD"]
