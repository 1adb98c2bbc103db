"""Evaluate a trained model with the reference's test protocol (REFERENCE.md 5.12).

    bert3d evaluate runs/hmdb51_r2plus1d_bert                      # a run directory
    bert3d evaluate model.keras --config training/configs/x.yaml data.root=/data/hmdb51
    bert3d evaluate runs/rgb --flow-model runs/flow               # two-stream fusion
    bert3d evaluate runs/rgb --clips 10 --crops 3                 # K clips x 3 crops

Every video of the test subset (the config's ``data.val_subset``) is cut into views, clips x crops
(``--clips cover --crops 10``: the reference's non-overlapping clips covering the video, each in ten
crops); all views go through the model in batches of ``--view-batch`` (10, as the reference), the raw
logits are averaged per video and the argmax is the prediction. Writes ``metrics.json`` (top-1, top-5,
mean class accuracy), ``per_class.csv``, ``confusion.png``, ``predictions.csv`` and ``logits.npz`` (the
per-video mean logits) into the output folder (`bert3d evaluate` prints one summary line). ``--flow-model`` adds a flow
stream: each stream's mean logits are L2-normalised and summed (combined_demo.py).

`evaluate` runs it: `resolve` finds the model file, config and class names of a run directory or a .keras
file, keras_bert3d.training.streams runs each model over the test subset, keras_bert3d.training.evaluation
writes the report.
"""
import json
import os

from keras_bert3d.training import run_folder
from keras_bert3d.training.evaluation import stream_metrics, write_report
from keras_bert3d.training.streams import evaluate_stream, fuse_streams

PROTOCOLS = "--clips cover --crops 10 (reference multi-clip ten-crop), --clips center --crops 10 (the BERT " \
            "script's single clip) or --clips K --crops 3"


def resolve(model_path, config_path=None, overrides=(), checkpoint="best"):
    """``(model file, config dict, class names or None)`` for a run directory or a ``.keras`` file.

    A run directory gives its ``config.yaml`` (unless ``config_path`` is given), ``<checkpoint>.keras`` and
    ``class_names.json``; a ``.keras`` file needs ``config_path`` for its data section."""
    from keras_bert3d.serving.model_files import class_names_beside
    from keras_bert3d.training.config_files import load_config, parse_override

    model_path = os.fspath(model_path)
    class_names = None
    if os.path.isdir(model_path):
        run_dir = model_path
        model_path = os.path.join(run_dir, f"{checkpoint}.keras")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"{model_path} not found: {run_dir} is not a finished run directory "
                                    f"(choose --checkpoint best|last, or pass a .keras file)")
        config_path = config_path or os.path.join(run_dir, run_folder.CONFIG)
        class_names = class_names_beside(model_path)
    elif not os.path.isfile(model_path) or not model_path.endswith(".keras"):
        raise FileNotFoundError(f"the model must be a run directory or a .keras file; received {model_path!r}")
    if config_path is not None:
        return model_path, load_config(config_path, list(overrides)), class_names
    # A bare .keras file without a config: the model comes from the file, the data from key=value overrides.
    items = dict(parse_override(o) for o in overrides)
    items.setdefault("model.config", {"file": model_path})
    try:
        return model_path, load_config(None, items), class_names
    except ValueError as err:
        raise ValueError(f"{err}. {model_path} is a bare .keras file: pass --config (a training config whose "
                         "`data` section names the test set) or data.dataset=... data.root=... overrides") from err


def load_model(path):
    """A saved model (``.keras``), uncompiled; keras_bert3d's layers are registered first."""
    from keras_bert3d.serving.model_files import load_classifier

    return load_classifier(path).model


def evaluate(model_path, config_path=None, overrides=(), clips="cover", crops=10, view_batch_size=10,
             flow_model=None, flow_config=None, output_dir=None, checkpoint="best", limit=None, progress=True,
             flow_overrides=()):
    """Evaluates a run directory or ``.keras`` file (plus, optionally, a flow model) and writes the report.

    ``overrides`` change the (RGB) model's config, ``flow_overrides`` the flow model's.

    Returns the metrics dict written to ``<output_dir>/metrics.json`` (fractions in [0, 1]), with its
    ``output_dir``; `keras_bert3d.training.evaluation.summary_line` gives its one-line text (per stream: its
    ``streams``)."""
    model_file, config, class_names = resolve(model_path, config_path, overrides, checkpoint)
    protocol = {"clips": clips, "crops": crops, "view_batch": view_batch_size}
    result = evaluate_stream(load_model(model_file), config, clips, crops, view_batch_size, class_names, limit,
                             progress)
    extra = {"protocol": protocol, "model": model_file, "modality": result.modality,
             "subset": config["data"].get("val_subset", "test"), "skipped_videos": len(result.skipped),
             "mean_views": float(result.views.mean())}
    tag = f"{clips}x{crops}"
    if flow_model is None:
        output_dir = output_dir or _default_output(model_path, model_file, run_folder.eval_folder(tag))
        metrics = write_report(output_dir, result.logits, result.labels, result.class_names, result.keys,
                               result.views, extra, title=f"{os.path.basename(model_file)} ({tag})")
    else:
        flow_file, flow_cfg, flow_names = resolve(flow_model, flow_config, flow_overrides, checkpoint)
        flow = evaluate_stream(load_model(flow_file), flow_cfg, clips, crops, view_batch_size,
                               flow_names or class_names, limit, progress)
        logits, labels, keys = fuse_streams(result, flow)
        extra.update(modality="two_stream", flow_model=flow_file,
                     skipped_videos=len(result.skipped) + len(flow.skipped),
                     streams={"rgb": stream_metrics(result), "flow": stream_metrics(flow)})
        output_dir = output_dir or _default_output(model_path, model_file, run_folder.eval_folder(tag, True))
        metrics = write_report(output_dir, logits, labels, result.class_names, keys, None, extra,
                               title=f"two-stream fusion ({tag})")
    metrics["output_dir"] = output_dir
    return metrics


def _default_output(model_path, model_file, folder):
    if os.path.isdir(model_path):
        return os.path.join(model_path, folder)
    return os.path.join(os.path.dirname(os.path.abspath(model_file)),
                        f"{os.path.basename(model_file)[:-len('.keras')]}_{folder}")
