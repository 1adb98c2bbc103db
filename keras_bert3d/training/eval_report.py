"""The report of an evaluation: metrics.json, per_class.csv, confusion.png, predictions.csv and logits.npz
(names: keras_bert3d.training.run_folder), and the summary line `bert3d evaluate` prints."""
import json
import os

import numpy as np

from keras_bert3d.training import evaluation, run_folder


def write_report(output_dir, logits, labels, class_names, keys=None, views=None, extra=None, title=None):
    """Writes metrics.json, per_class.csv, confusion.png, predictions.csv and logits.npz (per-video mean
    logits, labels and names: fuse or ensemble later without re-running); returns the metrics."""
    import csv

    os.makedirs(output_dir, exist_ok=True)
    metrics = evaluation.compute_metrics(logits, labels)
    metrics.update(extra or {})
    with open(os.path.join(output_dir, run_folder.METRICS), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    evaluation.write_per_class_csv(os.path.join(output_dir, run_folder.PER_CLASS),
                                   evaluation.per_class_rows(logits, labels, class_names))
    names = np.array([key.rsplit("#", 1)[0] for key in keys] if keys else [str(i) for i in range(len(labels))])
    np.savez(os.path.join(output_dir, run_folder.LOGITS), logits=logits, labels=labels, videos=names)
    predictions = logits.argmax(axis=1)
    confusion = evaluation.confusion_matrix(labels, predictions, len(class_names))
    evaluation.plot_confusion_matrix(confusion, class_names, os.path.join(output_dir, run_folder.CONFUSION), title=title)
    with open(os.path.join(output_dir, run_folder.PREDICTIONS), "w", newline="", encoding="utf-8") as f:
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
    metrics = evaluation.compute_metrics(result.logits, result.labels)
    metrics["skipped_videos"] = len(result.skipped)
    return metrics
