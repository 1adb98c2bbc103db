"""Reference PyTorch checkpoints -> Keras weights (torch imported lazily, only for .pth files)."""
from keras_bert3d.convert.checkpoint import (convert_checkpoint, load_reference_weights, model_weight_map,
                                             read_state_dict)
from keras_bert3d.convert.weight_map import LoadReport, WeightMap

__all__ = ["LoadReport", "WeightMap", "convert_checkpoint", "load_reference_weights", "model_weight_map",
           "read_state_dict"]
