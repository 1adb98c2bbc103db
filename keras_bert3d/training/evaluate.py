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
per-video mean logits) into the output folder and prints one summary line. ``--flow-model`` adds a flow
stream: each stream's mean logits are L2-normalised and summed (combined_demo.py).
"""
import dataclasses
import json
import os
import sys

import numpy as np

from keras_bert3d.training import evaluation

PROTOCOLS = "--clips cover --crops 10 (reference multi-clip ten-crop), --clips center --crops 10 (the BERT " \
            "script's single clip) or --clips K --crops 3"


@dataclasses.dataclass
class StreamResult:
    """Per-video outputs of one model over one test subset (videos in index order, skipped ones left out)."""

    logits: np.ndarray          # float64 (videos, classes): the mean raw logits of each video's views
    labels: np.ndarray          # int64 (videos,)
    views: np.ndarray           # int64 (videos,): views averaged per video
    keys: list | None           # per video: a name shared by the RGB and flow copies of it (None: unknown)
    class_names: list
    skipped: dict               # {path: reason} of the videos the pipeline skipped
    modality: str


def resolve(model_path, config_path=None, overrides=(), checkpoint="best"):
    """``(model file, config dict, class names or None)`` for a run directory or a ``.keras`` file.

    A run directory gives its ``config.yaml`` (unless ``config_path`` is given), ``<checkpoint>.keras`` and
    ``class_names.json``; a ``.keras`` file needs ``config_path`` for its data section."""
    from keras_bert3d.serving.model_files import class_names_beside
    from keras_bert3d.training.config import load_config, parse_override

    model_path = os.fspath(model_path)
    class_names = None
    if os.path.isdir(model_path):
        run_dir = model_path
        model_path = os.path.join(run_dir, f"{checkpoint}.keras")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"{model_path} not found: {run_dir} is not a finished run directory "
                                    f"(choose --checkpoint best|last, or pass a .keras file)")
        config_path = config_path or os.path.join(run_dir, "config.yaml")
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


def build_test_index(config, modality="rgb", limit=None):
    """The test subset named by ``config["data"]``: a `VideoIndex`, or a TFRecord pattern (a string)."""
    from keras_bert3d.data.indexes import build_index
    from keras_bert3d.data.records import VideoIndex

    data = config["data"]
    if data.get("source") == "tfrecord":
        if not data.get("tfrecord"):
            raise ValueError("data.source is 'tfrecord' but data.tfrecord (the test shards' pattern) is not set")
        return data["tfrecord"]
    kwargs = {"annotations": data.get("annotations"), "split": data.get("split", 1),
              "subset": data.get("val_subset", "test"), "modality": modality}
    if data.get("classes") is not None:
        kwargs["classes"] = data["classes"]
    index = build_index(data["dataset"], data["root"], **kwargs)
    if limit is not None:
        index = VideoIndex(list(index.records)[:limit], index.class_names, index.missing, index.source)
    return index


def predict_videos(model, dataset, view_batch_size=10, num_videos=None, progress=True):
    """Mean raw logits per video of a test-mode dataset (elements ``(views (N, T, S, S, C), label)``).

    The views of consecutive videos are streamed through the model in batches of ``view_batch_size``
    (inference mode), then averaged per video; a video's views never need to fit in one batch.

    Returns:
        ``(logits float64 (videos, classes), labels int64 (videos,), views int64 (videos,))``.
    """
    import tensorflow as tf

    from keras_bert3d import backend

    if isinstance(view_batch_size, bool) or not isinstance(view_batch_size, int) or view_batch_size < 1:
        raise ValueError(f"`view_batch_size` must be a positive int; received view_batch_size={view_batch_size!r}")

    def expand(video, element):
        views, label = element
        count = tf.shape(views)[0]
        return views, tf.fill([count], tf.cast(video, tf.int64)), tf.fill([count], tf.cast(label, tf.int64))

    batches = dataset.enumerate().map(expand).unbatch().batch(view_batch_size).prefetch(1)
    forward = backend.inference_function(model)
    bar = _progress_bar(num_videos, progress)
    chunks, ids, labels, seen = [], [], [], 0
    for views, video_ids, video_labels in batches:
        chunks.append(forward(views))
        ids.append(video_ids.numpy())
        labels.append(video_labels.numpy())
        done = int(ids[-1][-1])  # videos before the last one in this batch are complete
        if bar is not None and done > seen:
            bar.update(done - seen)
            seen = done
    if bar is not None:
        bar.update((int(ids[-1][-1]) + 1 if ids else 0) - seen)
        bar.close()
    if not chunks:
        raise ValueError("the test dataset gave no video (all skipped, or an empty index)")
    ids, labels = np.concatenate(ids), np.concatenate(labels)
    count = int(ids[-1]) + 1
    logits = evaluation.segment_mean(np.concatenate(chunks), ids, count)
    video_labels = np.zeros(count, np.int64)
    video_labels[ids] = labels
    return logits, video_labels, np.bincount(ids, minlength=count).astype(np.int64)


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc="evaluating", file=sys.stderr, dynamic_ncols=True)


def _video_key(record):
    """RGB and flow copies of a video share their base name (folder, or file without extension) and label."""
    name = os.path.basename(os.path.normpath(os.fspath(record.path)))
    return f"{os.path.splitext(name)[0]}#{record.label}"


def evaluate_stream(model, config, clips="cover", crops=10, view_batch_size=10, class_names=None, limit=None,
                    progress=True):
    """Runs ``model`` over the config's test subset with the protocol ``clips`` x ``crops``."""
    from keras_bert3d.data.pipeline import make_dataset

    preprocessing = getattr(model, "preprocessing", None)
    if not preprocessing:
        raise ValueError(f"model {model.name!r} carries no `preprocessing` record (not a keras_bert3d "
                         "VideoClassifier?): the test transform cannot be chosen")
    modality = preprocessing.get("modality", "rgb")
    index = build_test_index(config, modality, limit)
    data = config["data"]
    dataset, bad_videos = make_dataset(index, preprocessing, mode="test", source=data.get("source", "auto"),
                                       strict=bool(data.get("strict", False)), clips_per_video=clips,
                                       crops_per_clip=crops)
    records = None if isinstance(index, (str, os.PathLike)) else list(index)
    logits, labels, views = predict_videos(model, dataset, view_batch_size,
                                           len(records) if records is not None else None, progress)
    skipped = bad_videos.files()
    if skipped:
        print(f"{bad_videos.summary()}: not counted in the metrics", file=sys.stderr, flush=True)
    names = list(index.class_names) if records is not None else class_names
    names = names or class_names or [f"class_{c}" for c in range(logits.shape[1])]
    if len(names) != logits.shape[1]:
        raise ValueError(f"the model has {logits.shape[1]} classes but the test set has {len(names)}")
    keys = None
    if records is not None:  # the pipeline drops skipped videos and keeps the index order
        kept = [r for r in records if os.fspath(r.path) not in skipped]
        if len(kept) == len(labels) and all(r.label == label for r, label in zip(kept, labels)):
            keys = [_video_key(r) for r in kept]
    return StreamResult(logits, labels, views, keys, names, skipped, modality)


def fuse_streams(rgb, flow):
    """The videos both streams saw, in RGB order: ``(fused logits, labels, keys or None)``."""
    if rgb.logits.shape[1] != flow.logits.shape[1]:
        raise ValueError(f"the RGB model has {rgb.logits.shape[1]} classes, the flow model {flow.logits.shape[1]}")
    if rgb.keys is not None and flow.keys is not None:
        position = {key: i for i, key in enumerate(flow.keys)}
        pairs = [(i, position[key]) for i, key in enumerate(rgb.keys) if key in position]
        if not pairs:
            raise ValueError("no video of the RGB test set matches one of the flow test set (by name and label)")
        rgb_rows, flow_rows = (np.array(rows) for rows in zip(*pairs))
        keys = [rgb.keys[i] for i in rgb_rows]
    elif len(rgb.labels) == len(flow.labels) and (rgb.labels == flow.labels).all():
        rgb_rows = flow_rows = np.arange(len(rgb.labels))
        keys = rgb.keys or flow.keys
    else:
        raise ValueError("cannot align the RGB and flow videos: the streams gave different videos and their names "
                         "are unknown (TFRecord input, or a skipped video that was not counted)")
    fused = evaluation.fuse_two_stream(rgb.logits[rgb_rows], flow.logits[flow_rows])
    return fused, rgb.labels[rgb_rows], keys


def write_report(output_dir, logits, labels, class_names, keys=None, views=None, extra=None, title=None):
    """Writes metrics.json, per_class.csv, confusion.png, predictions.csv and logits.npz (per-video mean
    logits, labels and names: fuse or ensemble later without re-running); returns the metrics."""
    import csv

    os.makedirs(output_dir, exist_ok=True)
    metrics = evaluation.compute_metrics(logits, labels)
    metrics.update(extra or {})
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    evaluation.write_per_class_csv(os.path.join(output_dir, "per_class.csv"),
                                   evaluation.per_class_rows(logits, labels, class_names))
    names = np.array([key.rsplit("#", 1)[0] for key in keys] if keys else [str(i) for i in range(len(labels))])
    np.savez(os.path.join(output_dir, "logits.npz"), logits=logits, labels=labels, videos=names)
    predictions = logits.argmax(axis=1)
    confusion = evaluation.confusion_matrix(labels, predictions, len(class_names))
    evaluation.plot_confusion_matrix(confusion, class_names, os.path.join(output_dir, "confusion.png"), title=title)
    with open(os.path.join(output_dir, "predictions.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "class", "predicted", "predicted_class", "correct", "views"])
        for i, (label, predicted) in enumerate(zip(labels, predictions)):
            writer.writerow([names[i], int(label), class_names[label], int(predicted), class_names[predicted],
                             int(label == predicted), int(views[i]) if views is not None else ""])
    return metrics


def summary_line(metrics, name=""):
    prefix = f"{name}: " if name else ""
    return (f"{prefix}top-1 {100 * metrics['top1']:.2f}%  top-5 {100 * metrics['top5']:.2f}%  mean class "
            f"{100 * metrics['mean_class_accuracy']:.2f}%  ({metrics['videos']} videos)")


def _stream_metrics(result):
    metrics = evaluation.compute_metrics(result.logits, result.labels)
    metrics["skipped_videos"] = len(result.skipped)
    return metrics


def evaluate(model_path, config_path=None, overrides=(), clips="cover", crops=10, view_batch_size=10,
             flow_model=None, flow_config=None, output_dir=None, checkpoint="best", limit=None, progress=True,
             flow_overrides=()):
    """Evaluates a run directory or ``.keras`` file (plus, optionally, a flow model) and writes the report.

    ``overrides`` change the (RGB) model's config, ``flow_overrides`` the flow model's.

    Returns the metrics dict written to ``<output_dir>/metrics.json`` (fractions in [0, 1])."""
    model_file, config, class_names = resolve(model_path, config_path, overrides, checkpoint)
    protocol = {"clips": clips, "crops": crops, "view_batch": view_batch_size}
    result = evaluate_stream(load_model(model_file), config, clips, crops, view_batch_size, class_names, limit,
                             progress)
    extra = {"protocol": protocol, "model": model_file, "modality": result.modality,
             "subset": config["data"].get("val_subset", "test"), "skipped_videos": len(result.skipped),
             "mean_views": float(result.views.mean())}
    tag = f"{clips}x{crops}"
    if flow_model is None:
        output_dir = output_dir or _default_output(model_path, model_file, f"eval_{tag}")
        metrics = write_report(output_dir, result.logits, result.labels, result.class_names, result.keys,
                               result.views, extra, title=f"{os.path.basename(model_file)} ({tag})")
        print(summary_line(metrics, result.modality), flush=True)
    else:
        flow_file, flow_cfg, flow_names = resolve(flow_model, flow_config, flow_overrides, checkpoint)
        flow = evaluate_stream(load_model(flow_file), flow_cfg, clips, crops, view_batch_size,
                               flow_names or class_names, limit, progress)
        logits, labels, keys = fuse_streams(result, flow)
        extra.update(modality="two_stream", flow_model=flow_file,
                     skipped_videos=len(result.skipped) + len(flow.skipped),
                     streams={"rgb": _stream_metrics(result), "flow": _stream_metrics(flow)})
        output_dir = output_dir or _default_output(model_path, model_file, f"eval_two_stream_{tag}")
        metrics = write_report(output_dir, logits, labels, result.class_names, keys, None, extra,
                               title=f"two-stream fusion ({tag})")
        for name in ("rgb", "flow"):
            print(summary_line(extra["streams"][name], name), flush=True)
        print(summary_line(metrics, "two-stream"), flush=True)
    metrics["output_dir"] = output_dir
    return metrics


def _default_output(model_path, model_file, folder):
    if os.path.isdir(model_path):
        return os.path.join(model_path, folder)
    return os.path.join(os.path.dirname(os.path.abspath(model_file)),
                        f"{os.path.basename(model_file)[:-len('.keras')]}_{folder}")
