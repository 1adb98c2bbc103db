"""Serving: a trained model exported for TF Serving and the clients that classify videos with it.

Its layer: serving imports `keras_bert3d.data` (decoding, clip sampling), `keras_bert3d.models` (the
preprocessing rules, the classifier; with the layers, backbones and optimizers a ``.keras`` file names),
`keras_bert3d.backend`, `keras_bert3d.progress` and `keras_bert3d.validation`; it is imported by
`keras_bert3d.training` and `keras_bert3d.cli`, never the other way round, and it prints nothing (the CLI does).

From the bottom up:

- `signatures`: the export's signature names, input key, outputs and metadata record;
- `model_files`: ``.keras`` files and their class names (`load_classifier`), ``<name>/<version>/`` folders;
- `warmup`, `export`, `export_formats`, `models_config`: writing a SavedModel (with TF Serving's warmup
  requests), ONNX and LiteRT files, and TF Serving's ``models.config``;
- `video_client`: `VideoClient`, the base of every client: a video -> clips -> scores -> one prediction;
- `rest_client`, `grpc_client`, `local_clients`: TF Serving over REST or gRPC, a SavedModel or a Keras model
  in this process; `attention`: where a BERT model's CLS token looks;
- `open_client`: the client for a ``--model`` string; `timeline`: the clip slid over a whole video.
"""
