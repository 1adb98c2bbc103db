"""What an export serves: its signature names, input key and outputs, and the record it carries about them.

Every module of `keras_bert3d.serving` (the export, its warmup requests, the clients) takes these names from
here. An export made by `export.export_saved_model` has two signatures:

- ``serving_default`` (`SERVING_SIGNATURE`): uint8 clips ``(B, T, H, W, C)`` of any ``H x W``, resized,
  centre-cropped and normalised in the graph;
- ``predict_normalized`` (`NORMALIZED_SIGNATURE`): float32 clips ``(B, T, S, S, C)`` already normalised.

Both take the input `INPUT_KEY` and return `OUTPUT_KEYS`. The export's ``assets/`` folder holds `metadata`
as JSON (`METADATA_ASSET`), read back by `read_metadata`.
"""
import json
import os

SERVING_SIGNATURE = "serving_default"
NORMALIZED_SIGNATURE = "predict_normalized"
SIGNATURES = (SERVING_SIGNATURE, NORMALIZED_SIGNATURE)
INPUT_KEY = "clips"
TOP_K = 5
OUTPUT_KEYS = ("logits", "probabilities", "top_k_indices", "top_k_scores", "top_k_classes")
SCORE_KINDS = ("logits", "probabilities")  # the outputs a client aggregates, in order of preference
METADATA_ASSET = "preprocessing.json"


def metadata(model, preprocessing, class_names, version, top_k=TOP_K):
    """What ``assets/preprocessing.json`` (and the export's ``metadata_json`` variable) hold."""
    return {"model": model.name, "version": version, "num_classes": len(class_names), "class_names": class_names,
            "preprocessing": preprocessing, "input_key": INPUT_KEY, "top_k": min(top_k, len(class_names)),
            "signatures": {SERVING_SIGNATURE: "uint8 clips (B, T, H, W, C), any H x W: resized, centre-cropped "
                                              "and normalised in the graph",
                           NORMALIZED_SIGNATURE: "float32 clips (B, T, S, S, C), already normalised"},
            "outputs": list(OUTPUT_KEYS)}


def metadata_path(export_path):
    """Where an export keeps its `metadata`."""
    return os.path.join(export_path, "assets", METADATA_ASSET)


def read_metadata(export_path):
    """The export's ``assets/preprocessing.json``: model, version, class names, preprocessing, signatures."""
    with open(metadata_path(export_path), encoding="utf-8") as f:
        return json.load(f)
