"""In-process clients: an export's signature or a Keras model called in this process, no server.

They share `clients.VideoClient`'s clip sampling, batching and multi-clip aggregation, so `bert3d predict`
treats a local model and a served one alike.
"""
import os

import numpy as np

from keras_bert3d.serving.clients import DEFAULT_SIGNATURE, ServingError, VideoClient, softmax


class SavedModelClient(VideoClient):
    """An export's ``serving_default`` signature, loaded and called in this process (no server)."""

    def __init__(self, export_dir, signature_name=DEFAULT_SIGNATURE, class_names=None):
        import tensorflow as tf

        self.export_dir = os.fspath(export_dir)
        if not os.path.exists(os.path.join(self.export_dir, "saved_model.pb")):
            raise FileNotFoundError(f"{self.export_dir}: not a SavedModel (no saved_model.pb)")
        self.loaded = tf.saved_model.load(self.export_dir)
        if signature_name not in self.loaded.signatures:
            raise ValueError(f"{self.export_dir} has no signature {signature_name!r}; it has "
                             f"{sorted(self.loaded.signatures)}")
        self.signature = self.loaded.signatures[signature_name]
        specs = self.signature.structured_input_signature[1]
        if len(specs) != 1:
            raise ValueError(f"signature {signature_name!r} takes {sorted(specs)}; expected one clip input")
        self.input_name = next(iter(specs))
        meta = self._read_metadata()
        self.preprocessing = dict(meta.get("preprocessing") or {})
        clip_len = self.preprocessing.get("num_frames")
        super().__init__(clip_len, class_names or meta.get("class_names"))

    def _read_metadata(self):
        """The export's ``assets/preprocessing.json`` (`export.read_metadata`), or {} when it has none."""
        from keras_bert3d.serving.export import METADATA_ASSET, read_metadata

        if not os.path.exists(os.path.join(self.export_dir, "assets", METADATA_ASSET)):
            return {}
        return read_metadata(self.export_dir)

    def predict_clips(self, clips):
        import tensorflow as tf

        try:
            outputs = self.signature(**{self.input_name: tf.constant(np.asarray(clips))})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as err:
            raise ServingError(f"{self.export_dir} refused the request: {getattr(err, 'message', err)}") from None
        return {name: np.asarray(value) for name, value in outputs.items()}


class KerasClient(VideoClient):
    """A Keras `VideoClassifier`; the preset's preprocessing (``model.preprocessing``) runs here."""

    def __init__(self, model, class_names=None):
        self.model = model
        self.preprocessing = dict(getattr(model, "preprocessing", None) or {})
        if "num_frames" not in self.preprocessing:
            raise ValueError(f"{getattr(model, 'name', model)} carries no preprocessing record "
                             f"(model.preprocessing={self.preprocessing}); build it with keras_bert3d.build_model")
        super().__init__(self.preprocessing["num_frames"], class_names)

    def preprocess(self, clips):
        """uint8 ``(B, T, H, W, C)`` -> float32 ``(B, T, S, S, C)``: the model's own preprocessor, the layer
        the export's graph runs."""
        return self.model.preprocess(np.asarray(clips))

    def predict_clips(self, clips):
        logits = np.asarray(self.model(self.preprocess(clips), training=False))
        return {"logits": logits, "probabilities": softmax(logits).astype(np.float32)}
