"""One model over a test subset with the reference's protocol (clips x crops): a `StreamResult` per model,
and the two-stream fusion of an RGB and a flow result (keras_bert3d.training.evaluate runs them).

`predict_videos` streams every video's views through the model in batches and averages the raw logits per
video; `evaluate_stream` builds the test pipeline of a config and runs it; `fuse_streams` pairs the videos
both streams saw. The arithmetic is keras_bert3d.training.evaluation's.
"""
import dataclasses
import logging
import os

import numpy as np

from keras_bert3d.training import evaluation
from keras_bert3d.training.pipelines import counted_dataset
from keras_bert3d.validation import check_positive_int

log = logging.getLogger(__name__)


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
    """Mean raw logits per video of a test-mode dataset: elements ``(views (N, T, S, S, C), label)`` (one per
    video), or ``(views, label, keys)`` (one per clip, ``test_elements="clip"``: what `evaluate_stream` streams).

    The views are streamed through the model in batches of ``view_batch_size`` (inference mode), then averaged
    per video in the video's crop-major view order; a video's views never need to fit in one batch.

    Returns:
        ``(logits float64 (videos, classes), labels int64 (videos,), views int64 (videos,))``.
    """
    import tensorflow as tf

    import keras_bert3d.backend as backend
    from keras_bert3d.progress import Progress

    check_positive_int("view_batch_size", view_batch_size)

    if len(dataset.element_spec) == 2:  # one element per video: keys [video, attempt 0, view, views]
        def expand(video, element):
            views, label = element
            count = tf.cast(tf.shape(views)[0], tf.int64)
            keys = tf.stack([tf.fill([count], video), tf.zeros([count], tf.int64), tf.range(count),
                             tf.fill([count], count)], axis=1)
            return views, tf.fill([count], tf.cast(label, tf.int64)), keys

        views = dataset.enumerate().map(expand)
    else:
        views = dataset.map(lambda clip_views, label, keys: (
            clip_views, tf.fill([tf.shape(clip_views)[0]], tf.cast(label, tf.int64)), keys))
    batches = views.unbatch().batch(view_batch_size).prefetch(1)
    forward = backend.inference_function(model)
    chunks, labels, keys, arrived = [], [], [], {}
    with Progress(num_videos or 0, "evaluating", enabled=progress) as bar:  # 0: a count without a total
        for batch_views, batch_labels, batch_keys in batches:
            chunks.append(forward(batch_views))
            labels.append(batch_labels.numpy())
            keys.append(batch_keys.numpy())
            for video, attempt, _, total in keys[-1].tolist():
                arrived[video, attempt] = arrived.get((video, attempt), 0) + 1
                if arrived[video, attempt] == total:
                    bar.update(1)
    if not chunks:
        raise ValueError("the test dataset gave no video (all skipped, or an empty index)")
    return _video_means(np.concatenate(chunks), np.concatenate(labels), np.concatenate(keys))


def _video_means(view_logits, labels, keys):
    """Per video, the highest attempt whose views all arrived (`keras_bert3d.data.clip_stream`), its views in
    crop-major order: ``(logits, labels, views)`` as `predict_videos` returns them."""
    video, attempt, view, total = keys.T
    counts = {}
    for pair in zip(video.tolist(), attempt.tolist()):
        counts[pair] = counts.get(pair, 0) + 1
    final = {}
    for (v, a), count in counts.items():
        if count == total[(video == v) & (attempt == a)][0]:
            final[v] = max(final.get(v, -1), a)
    if not final:
        raise ValueError("the test dataset gave no complete video (all skipped)")
    videos = np.array(sorted(final), np.int64)
    kept = np.flatnonzero(np.isin(video, videos) & (attempt == np.array([final.get(v, -1) for v in video.tolist()])))
    kept = kept[np.lexsort((view[kept], video[kept]))]  # each video's views in the order the reference stacks them
    ids = np.searchsorted(videos, video[kept])
    logits = evaluation.segment_mean(view_logits[kept], ids, len(videos))
    video_labels = np.zeros(len(videos), np.int64)
    video_labels[ids] = labels[kept]
    return logits, video_labels, np.bincount(ids, minlength=len(videos)).astype(np.int64)


def _video_key(record):
    """RGB and flow copies of a video share their base name (folder, or file without extension) and label."""
    name = os.path.basename(os.path.normpath(os.fspath(record.path)))
    return f"{os.path.splitext(name)[0]}#{record.label}"


def evaluate_stream(model, config, clips="cover", crops=10, view_batch_size=10, class_names=None, limit=None,
                    progress=True):
    """Runs ``model`` over the config's test subset with the protocol ``clips`` x ``crops``."""
    preprocessing = getattr(model, "preprocessing", None)
    if not preprocessing:
        raise ValueError(f"model {model.name!r} carries no `preprocessing` record (not a keras_bert3d "
                         "VideoClassifier?): the test transform cannot be chosen")
    modality = preprocessing.get("modality", "rgb")
    index = build_test_index(config, modality, limit)
    data = config["data"]
    dataset, counter = counted_dataset(index, preprocessing, mode="test", source=data.get("source", "auto"),
                                       strict=bool(data.get("strict", False)), clips_per_video=clips,
                                       crops_per_clip=crops, test_elements="clip")
    records = None if isinstance(index, (str, os.PathLike)) else list(index)
    logits, labels, views = predict_videos(model, dataset, view_batch_size,
                                           len(records) if records is not None else None, progress)
    skipped = counter.files()
    if skipped:
        log.warning(f"{counter.summary()}: not counted in the metrics")
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
