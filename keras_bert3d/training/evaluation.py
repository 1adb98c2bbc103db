"""The reference test protocol's arithmetic, as pure NumPy functions (REFERENCE.md 5.12).

- A video's prediction is the **mean of the raw logits** of all its views (clips x crops; no softmax),
  then the argmax (`video_logits`, `segment_mean`).
- Two-stream fusion: each stream's mean logit vector is **L2-normalised**, then the two are summed
  (`fuse_two_stream`, combined_demo.py:242-244).
- Metrics: top-1, top-5 and the mean class accuracy (the mean over classes of each class's recall,
  classes without test videos left out) (`compute_metrics`), the confusion matrix (rows: true class,
  columns: predicted class), a per-class CSV and a confusion-matrix PNG (matplotlib's Agg canvas; no
  pyplot, so no global state is touched).

- The report of an evaluation (`write_report`): metrics.json, per_class.csv, confusion.png, predictions.csv
  and logits.npz (names: keras_bert3d.training.run_folder), and its summary line (`summary_line`).

Nothing here runs a model or reads data; `keras_bert3d.training.evaluate` does, and calls these.
"""
import csv
import json
import os

import numpy as np

from keras_bert3d.atomic import atomic_open, atomic_path
from keras_bert3d.training import run_folder

TOP_K = (1, 5)


def _logits_2d(logits, name="logits"):
    logits = np.asarray(logits)
    if logits.ndim != 2 or not logits.shape[0] or not logits.shape[1]:
        raise ValueError(f"`{name}` must be a non-empty (videos, classes) array; received shape {logits.shape}")
    return logits


def _labels_1d(labels, count, num_classes=None):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != count or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be {count} integers; received {labels.dtype} shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        raise ValueError(f"`labels` must lie in 0..{num_classes - 1 if num_classes else 'C-1'}; received "
                         f"{labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def video_logits(view_logits):
    """The video's logits: the mean over its views (axis 0) of the raw logits, in float64."""
    view_logits = np.asarray(view_logits, np.float64)
    if view_logits.ndim != 2 or not view_logits.shape[0]:
        raise ValueError(f"`view_logits` must be (views, classes) with views >= 1; received {view_logits.shape}")
    return view_logits.mean(axis=0)


def segment_mean(view_logits, video_ids, num_videos):
    """Per-video mean logits from views of many videos batched together.

    Args:
        view_logits: ``(num_views, classes)`` logits of views in any order.
        video_ids: ``(num_views,)`` the video (0..num_videos-1) each view belongs to.
        num_videos: the number of videos; every one must have at least one view.

    Returns:
        float64 ``(num_videos, classes)``.
    """
    view_logits = _logits_2d(np.asarray(view_logits, np.float64), "view_logits")
    video_ids = _labels_1d(video_ids, len(view_logits), num_videos)
    sums = np.zeros((num_videos, view_logits.shape[1]), np.float64)
    np.add.at(sums, video_ids, view_logits)
    counts = np.bincount(video_ids, minlength=num_videos)
    if (counts == 0).any():
        raise ValueError(f"videos {np.flatnonzero(counts == 0)[:10].tolist()} have no views")
    return sums / counts[:, None]


def l2_normalize(logits, epsilon=1e-12):
    """Each row divided by its L2 norm (a zero row stays zero)."""
    logits = np.asarray(logits, np.float64)
    norms = np.linalg.norm(logits, axis=-1, keepdims=True)
    return logits / np.maximum(norms, epsilon)


def fuse_two_stream(rgb_logits, flow_logits):
    """The reference's two-stream fusion: ``l2_normalize(rgb) + l2_normalize(flow)`` per video.

    Both are per-video mean logits ``(videos, classes)`` (or one video's ``(classes,)``) in the same
    video order."""
    rgb, flow = np.asarray(rgb_logits, np.float64), np.asarray(flow_logits, np.float64)
    if rgb.shape != flow.shape or rgb.ndim not in (1, 2):
        raise ValueError(f"the RGB and flow logits must have one (videos, classes) shape; received {rgb.shape} "
                         f"and {flow.shape}")
    return l2_normalize(rgb) + l2_normalize(flow)


def top_k_hits(logits, labels, k):
    """Boolean ``(videos,)``: the label is among the ``k`` largest logits (``k`` clipped to the class count).

    Ties are broken towards the lower class index, as ``argmax`` does."""
    logits = _logits_2d(logits)
    labels = _labels_1d(labels, len(logits), logits.shape[1])
    k = min(int(k), logits.shape[1])
    if k < 1:
        raise ValueError(f"`k` must be >= 1; received k={k}")
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def top_k_accuracy(logits, labels, k=1):
    """The fraction of videos whose label is among the top ``k`` logits."""
    return float(top_k_hits(logits, labels, k).mean())


def confusion_matrix(labels, predictions, num_classes):
    """int64 ``(num_classes, num_classes)``: ``[true, predicted]`` video counts."""
    labels = _labels_1d(labels, len(np.asarray(labels)), num_classes)
    predictions = _labels_1d(predictions, len(labels), num_classes)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(confusion):
    """Each class's recall (correct / videos of the class) from a confusion matrix; NaN for a class
    without videos."""
    confusion = np.asarray(confusion)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(labels, predictions, num_classes):
    """The mean of the per-class accuracies over the classes that have test videos.

    Unlike top-1 (which weights classes by their number of videos), every class counts once."""
    accuracy = per_class_accuracy(confusion_matrix(labels, predictions, num_classes))
    return float(np.nanmean(accuracy))


def compute_metrics(logits, labels, top_k=TOP_K):
    """``{"videos", "top1", "top5", "mean_class_accuracy"}`` (fractions in [0, 1]) from per-video logits."""
    logits = _logits_2d(logits)
    labels = _labels_1d(labels, len(logits), logits.shape[1])
    predictions = logits.argmax(axis=1)
    metrics = {"videos": int(len(labels))}
    for k in top_k:
        metrics[f"top{k}"] = top_k_accuracy(logits, labels, k)
    metrics["mean_class_accuracy"] = mean_class_accuracy(labels, predictions, logits.shape[1])
    return metrics


def per_class_rows(logits, labels, class_names):
    """One dict per class: ``label, class, videos, correct, accuracy, precision, top5, most_confused_with``.

    ``accuracy`` is the class's recall; empty strings stand for undefined values (no videos of the
    class, or no video predicted as it)."""
    logits = _logits_2d(logits)
    num_classes = logits.shape[1]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    labels = _labels_1d(labels, len(logits), num_classes)
    predictions = logits.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, num_classes)
    hits5 = top_k_hits(logits, labels, 5)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    rows = []
    for c, name in enumerate(class_names):
        wrong = confusion[c].copy()
        wrong[c] = 0
        rows.append({
            "label": c, "class": name, "videos": int(support[c]), "correct": int(confusion[c, c]),
            "accuracy": _fraction(confusion[c, c], support[c]), "precision": _fraction(confusion[c, c], predicted[c]),
            "top5": _fraction(hits5[labels == c].sum(), support[c]),
            "most_confused_with": class_names[int(wrong.argmax())] if wrong.any() else "",
        })
    return rows


def _fraction(numerator, denominator):
    return round(float(numerator) / float(denominator), 6) if denominator else ""


def write_per_class_csv(path, rows):
    """Writes `per_class_rows` to ``path`` (header + one line per class)."""
    if not rows:
        raise ValueError("no rows to write")
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_confusion_matrix(confusion, class_names, path, normalize=True, title=None):
    """Saves the confusion matrix as a PNG (rows: true class, columns: predicted class).

    ``normalize`` shows each row as fractions of its class's videos. Class names label the axes up to
    60 classes; counts are written in the cells up to 20 classes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, np.float64)
    num_classes = confusion.shape[0]
    if confusion.shape != (num_classes, num_classes) or len(class_names) != num_classes:
        raise ValueError(f"a square confusion matrix and one name per class are needed; received "
                         f"{confusion.shape} and {len(class_names)} names")
    values = confusion
    if normalize:
        values = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.3 * num_classes, 40)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    if num_classes <= 60:
        ticks = np.arange(num_classes)
        axes.set_xticks(ticks, labels=class_names, rotation=90, fontsize=8)
        axes.set_yticks(ticks, labels=class_names, fontsize=8)
    if num_classes <= 20:
        for (i, j), count in np.ndenumerate(confusion):
            if count:
                axes.text(j, i, int(count), ha="center", va="center", fontsize=8,
                          color="white" if values[i, j] > 0.5 * (values.max() or 1) else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def write_report(output_dir, logits, labels, class_names, keys=None, views=None, extra=None, title=None):
    """Writes metrics.json, per_class.csv, confusion.png, predictions.csv and logits.npz (per-video mean
    logits, labels and names: fuse or ensemble later without re-running); returns the metrics."""
    os.makedirs(output_dir, exist_ok=True)
    metrics = compute_metrics(logits, labels)
    metrics.update(extra or {})
    with atomic_open(os.path.join(output_dir, run_folder.METRICS), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    write_per_class_csv(os.path.join(output_dir, run_folder.PER_CLASS),
                                   per_class_rows(logits, labels, class_names))
    names = np.array([key.rsplit("#", 1)[0] for key in keys] if keys else [str(i) for i in range(len(labels))])
    with atomic_open(os.path.join(output_dir, run_folder.LOGITS), "wb") as f:
        np.savez(f, logits=logits, labels=labels, videos=names)
    predictions = logits.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    plot_confusion_matrix(confusion, class_names, os.path.join(output_dir, run_folder.CONFUSION), title=title)
    with atomic_open(os.path.join(output_dir, run_folder.PREDICTIONS), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "class", "predicted", "predicted_class", "correct", "views"])
        for i, (label, predicted) in enumerate(zip(labels, predictions)):
            writer.writerow([names[i], int(label), class_names[label], int(predicted), class_names[predicted],
                             int(label == predicted), int(views[i]) if views is not None else ""])
    return metrics


def summary_line(metrics, name=""):
    """The one line `bert3d evaluate` prints per model: top-1, top-5, mean class accuracy, videos."""
    prefix = f"{name}: " if name else ""
    return (f"{prefix}top-1 {100 * metrics['top1']:.2f}%  top-5 {100 * metrics['top5']:.2f}%  mean class "
            f"{100 * metrics['mean_class_accuracy']:.2f}%  ({metrics['videos']} videos)")


def stream_metrics(result):
    """The metrics of one stream of a two-stream evaluation, with its skipped videos."""
    metrics = compute_metrics(result.logits, result.labels)
    metrics["skipped_videos"] = len(result.skipped)
    return metrics
