"""keras_bert3d: late temporal modeling with BERT for 3D-CNN action recognition (Keras 3)."""
