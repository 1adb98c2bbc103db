"""Reading reference checkpoints (.pth with torch, or .npz) and loading them into our models."""
import importlib
import os

import numpy as np

from keras_bert3d.convert.bert import bert_map
from keras_bert3d.convert.weight_map import WeightMap

# Backbone class -> the module of its reference mapping.
FAMILIES = {
    "R2Plus1DBackbone": "keras_bert3d.convert.r2plus1d",
    "ResNeXt3DBackbone": "keras_bert3d.convert.resnext",
    "I3DBackbone": "keras_bert3d.convert.i3d",
    "SlowFastBackbone": "keras_bert3d.convert.slowfast",
}
# Prefixes of keys the fine-tuned reference models carry for modules they never use.
UNUSED_PREFIXES = ("model.head.",)
TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")


def family_module(backbone):
    name = type(backbone).__name__
    if name not in FAMILIES:
        raise ValueError(f"No reference mapping for backbone class {name}")
    return importlib.import_module(FAMILIES[name])


def read_state_dict(path):
    """A reference checkpoint as ``{key: float32 numpy array}``.

    ``.npz`` files need no torch. PyTorch files are read with ``torch.load(weights_only=True)``
    (torch is an optional dependency); a ``state_dict`` / ``model_state`` wrapper and a
    DataParallel ``module.`` prefix are removed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            state = {k[2:] if k.startswith("w:") else k: data[k] for k in data.files}
    elif path.endswith(TORCH_SUFFIXES):
        try:
            import torch  # optional: only the converter needs it
        except ImportError as err:
            raise ImportError(f"Reading {path} needs PyTorch: pip install 'keras_bert3d[torch]', "
                              "or convert it to .npz of the same key names") from err
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure names the file
            raise ValueError(f"{path} is not a readable PyTorch checkpoint: {err}") from err
        for wrapper in ("state_dict", "model_state", "model"):
            if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
        state = {k: v.detach().cpu().float().numpy() for k, v in obj.items() if hasattr(v, "detach")}
    else:
        raise ValueError(f"Unknown checkpoint format for {path}: expected .pth/.pt/.tar or .npz")
    if not state:
        raise ValueError(f"{path} holds no tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def head_weight_map(model):
    """Keys of everything after the backbone: BERT(s), LSTM, non-local block, linear layers."""
    from keras_bert3d.convert.heads import lstm_map, non_local_map

    weights = WeightMap()
    names = {layer.name: layer for layer in model.layers}
    for name, prefix in (("bert", "bert."), ("bert_slow", "bert_slow."), ("bert_fast", "bert_fast.")):
        if name in names:
            weights.extend(bert_map(names[name], prefix))
    if "lstm" in names:
        weights.extend(lstm_map(names["lstm"], "lstm."))
    if "non_local" in names:
        weights.extend(non_local_map(names["non_local"], "NLB."))
    if "classifier_hidden" in names:
        weights.dense("linear", names["classifier_hidden"])
    weights.dense("fc_action", names["classifier"])
    if type(model.backbone).__name__ == "SlowFastBackbone" and model.get_config()["pooling"] == "tgap":
        # The SlowFast baseline registers fc_action also as model.head.projection.
        weights.alias_prefix("model.head.projection.", "fc_action.")
    return weights


def model_weight_map(model):
    """The complete reference-key map of a VideoClassifier."""
    weights = family_module(model.backbone).backbone_weight_map(model.backbone)
    weights.extend(head_weight_map(model))
    return weights


def is_backbone_file(state, model):
    """True when no key of ``state`` is a key of the fine-tuned reference model: then it is a
    backbone-only pretrained file (IG65M, Kinetics, ...) with that file's own names."""
    weights = model_weight_map(model)
    return not any(k in weights.entries or k in weights.aliases for k in state)


def load_reference_weights(model, state, strict=False):
    """Load a reference state dict (fine-tuned model or backbone-only file) into ``model``.

    A backbone-only file fills the backbone and leaves BERT and the head as initialised.
    Returns a ``LoadReport``; shape mismatches raise naming the key and both shapes.
    """
    module = family_module(model.backbone)
    backbone_file = is_backbone_file(state, model)
    if backbone_file:
        state = module.backbone_file_keys(state)
        weights = module.backbone_weight_map(model.backbone)
    else:
        weights = model_weight_map(model)
    _, _, unexpected = weights.resolve(state)
    unused = {k for k in unexpected if k.startswith(UNUSED_PREFIXES)}
    state = {k: v for k, v in state.items() if k not in unused}
    # The reference builds an FRMB model from the backbone file, then replaces the last block:
    # that block's tensors do not fit and start from scratch, as there.
    frmb = model.backbone.get_config().get("feature_reduction") == "frmb"
    return weights.load(state, strict=strict, skip_mismatched=backbone_file and frmb)


def convert_checkpoint(path, arch, num_classes, output, strict=False, **overrides):
    """Read ``path``, build preset ``arch`` with ``num_classes`` (and ``build_model`` overrides),
    load, save ``output`` (.weights.h5) atomically. Returns ``(model, report)``.
    """
    from keras_bert3d.models.builder import build_model

    if not str(output).endswith(".weights.h5"):
        raise ValueError(f"Output must end with .weights.h5; received {output}")
    state = read_state_dict(path)
    model = build_model(arch, num_classes, **overrides)
    report = load_reference_weights(model, state, strict=strict)
    tmp = f"{output}.tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, output)  # atomic: a crash never leaves a half-written file
    return model, report
