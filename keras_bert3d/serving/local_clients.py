"""In-process clients: an export's signature or a Keras model called in this process, no server.

They share `video_client.VideoClient`'s clip sampling, batching, scoring loop and multi-clip aggregation, so
`bert3d predict` treats a local model and a served one alike.

- `SavedModelClient`: the export's ``serving_default`` signature (preprocessing in its graph).
- `KerasClient`: a keras_bert3d ``VideoClassifier``; the preset's preprocessing runs here through the
  model's own `VideoPreprocessor` (the layer the export's graph runs), and BERT models also report where
  the CLS token attends (`KerasClient.attention`).
"""
import os

import numpy as np

from keras_bert3d.serving.attention import cls_attention
from keras_bert3d.serving.signatures import SERVING_SIGNATURE, metadata_path, read_metadata
from keras_bert3d.serving.video_client import ServingError, VideoClient, softmax


class SavedModelClient(VideoClient):
    """An export's ``serving_default`` signature, loaded and called in this process (no server). A SavedModel
    is code (a TensorFlow graph that runs as written): load only your own exports or trusted ones."""

    def __init__(self, export_dir, signature_name=SERVING_SIGNATURE, class_names=None):
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
        meta = read_metadata(self.export_dir) if os.path.exists(metadata_path(self.export_dir)) else {}
        self.preprocessing = dict(meta.get("preprocessing") or {})
        clip_len = self.preprocessing.get("num_frames")
        super().__init__(clip_len, class_names or meta.get("class_names"))

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
        self._attention_model = None

    def preprocess(self, clips):
        """uint8 ``(B, T, H, W, C)`` -> float32 ``(B, T, S, S, C)``: the model's own preprocessor, the layer
        the export's graph runs."""
        return self.model.preprocess(np.asarray(clips))

    def predict_clips(self, clips):
        logits = np.asarray(self.model(self.preprocess(clips), training=False))
        return {"logits": logits, "probabilities": softmax(logits).astype(np.float32)}

    @property
    def has_attention(self):
        """Whether the model pools with BERT, whose CLS attention `attention` reports."""
        return bool(getattr(self.model, "bert_layers", dict)())

    def attention(self, clips):
        """uint8 clips -> ``(logits (B, C), {BERT layer name: (B, N + 1) CLS attention row})`` in one pass
        (`cls_attention`: the last block, heads averaged; column 0 is the CLS key itself)."""
        if self._attention_model is None:
            self._attention_model = self.model.attention_model()
        outputs = self._attention_model(self.preprocess(clips), training=False)
        rows = {name: cls_attention(scores) for name, scores in outputs.items() if name != "logits"}
        return np.asarray(outputs["logits"]), rows

    def score_clips(self, clips, kind=None, attention=False):
        """As `VideoClient.score_clips`; with ``attention`` (BERT models) the logits come with the first
        BERT's CLS attention over the clip's temporal tokens, ``(B, N)``."""
        if not (attention and self.has_attention):
            return super().score_clips(clips, kind)
        logits, rows = self.attention(clips)
        first = next(iter(self.model.bert_layers()))
        return np.asarray(logits, np.float64), "logits", rows[first][:, 1:]
