"""The video client: a video file -> clips -> the model's scores -> one prediction, whatever runs the model.

`VideoClient` is the base of every client (`rest_client.RestClient`, `grpc_client.GrpcClient`,
`local_clients.SavedModelClient`, `local_clients.KerasClient`); a subclass implements `predict_clips`. Every
client turns a video into clips the same way (`sample_clips`: the reference's multi-clip ``"cover"``, the
centred ``"center"`` clip, or K uniform clips), decodes them a batch at a time (`clip_batches`; memory stays one
batch of clips whatever the video's length) and scores them in one loop (`VideoClient.score_batches`, which the
timeline drives too), then aggregates the clip scores into one prediction (`aggregate`).

Aggregation: ``"logits"`` (default) is the reference's rule (REFERENCE.md 5.12: the mean of the clips' raw
logits, then the softmax), from the response's ``logits`` (`export_saved_model` returns them). From a server
that returns only ``probabilities`` it is the same number: ``log p = logits - lse`` and the per-clip constant
``lse`` cancels in the softmax, so ``softmax(mean(log p)) == softmax(mean(logits))``. ``"probabilities"``
averages the clips' probabilities instead. Single centre crop per clip (the export's rule), not ten crops.

Requests carry uint8 frames as decoded (any size: the export resizes). ``frame_size=[H, W]`` resizes them
here first (`resize_frames`, the pipeline's and the export's bilinear rule) to make requests smaller; with
the export's own ``frame_size`` the graph's resize is then the identity and the answer does not change.
"""
import os
import typing

import numpy as np

from keras_bert3d.data import sampling
from keras_bert3d.data.video_reader import probe, stream_clips
from keras_bert3d.progress import Progress
from keras_bert3d.serving.signatures import OUTPUT_KEYS, SCORE_KINDS
from keras_bert3d.validation import check_choice, check_positive_int

AGGREGATIONS = ("logits", "probabilities")
_TINY = np.finfo(np.float32).tiny
# What a served model may answer (`response_limit`): at most MAX_CLASSES classes (a sane bound: Kinetics-700 is
# the largest set here), each output value at most VALUE_BYTES as JSON text, plus a margin; metadata answers
# at most METADATA_BYTES. A server that sends more is refused with a `ServingError`, not read into memory.
MAX_CLASSES = 10_000
VALUE_BYTES = 32
CLIP_MARGIN_BYTES = 16 * 2**10  # per clip: top-k class names, keys, brackets
RESPONSE_MARGIN_BYTES = 2**20
METADATA_BYTES = 16 * 2**20


def response_limit(num_clips, num_classes=None):
    """The most bytes a predict answer for ``num_clips`` clips may take: every output (`OUTPUT_KEYS`) for
    ``num_classes`` classes (the client's class names; at least `MAX_CLASSES`), `VALUE_BYTES` a value, plus
    margins."""
    classes = max(int(num_classes or 0), MAX_CLASSES)
    per_clip = len(OUTPUT_KEYS) * classes * VALUE_BYTES + CLIP_MARGIN_BYTES
    return RESPONSE_MARGIN_BYTES + max(int(num_clips), 1) * per_clip


def check_response_size(size, limit, where):
    """A `ServingError` when an answer of ``size`` bytes is over ``limit`` (`response_limit`)."""
    if size > limit:
        raise ServingError(f"{where}: the answer is over {limit} bytes (more than the model's scores need); "
                           "refused")


class ServingError(RuntimeError):
    """The server refused a request or could not be reached; the message carries its own words."""


class VideoPrediction(typing.NamedTuple):
    """A video's multi-clip prediction."""

    path: str
    num_frames: int  # frames in the video
    clip_indices: np.ndarray  # (K, T) 0-based frame indices of each clip
    clip_scores: np.ndarray  # (K, C) each clip's logits or probabilities (see ``score_kind``)
    score_kind: str  # "logits" or "probabilities"
    probabilities: np.ndarray  # (C,) aggregated
    top: list  # [(index, class name, probability)], best first
    class_names: list  # names known to the client (index -> name); may be shorter than C


class ClipScores(typing.NamedTuple):
    """What `VideoClient.score_batches` returns for a sequence of clips."""

    scores: np.ndarray  # (K, C) float64 logits or probabilities
    kind: str  # "logits" or "probabilities"
    attention: typing.Optional[np.ndarray]  # (K, N) CLS attention over each clip's temporal tokens, or None


def sample_clips(path, clip_len, clips="cover", stride=1):
    """Probes ``path`` and returns ``(num_frames, indices (K, clip_len))``; raises `VideoDecodeError`
    (its message names the file) when the video will not decode."""
    info = probe(path)
    return info.num_frames, sampling.eval_clips(info.num_frames, clip_len, sampling.parse_clips(clips), stride)


def resize_frames(frames, frame_size):
    """uint8 frames ``(N, H, W, C)`` (or one frame) -> ``frame_size`` ``[H', W']`` with `transforms.resize`,
    the data pipeline's op (bilinear, half-pixel centres, no antialiasing, rounded back to uint8)."""
    import tensorflow as tf

    from keras_bert3d.data import transforms

    return transforms.resize(tf.constant(np.asarray(frames)), [int(v) for v in frame_size]).numpy()


def clip_batches(path, indices, batch_size=4, frame_size=None):
    """Yields uint8 ``(b, T, H, W, 3)`` batches of the clips ``indices`` (K, T), decoded in one forward pass a clip
    at a time (`stream_clips`: memory holds a batch of clips whatever the video's length); ``frame_size=[H, W]``:
    each frame resized as it decodes (`resize_frames`)."""
    batch_size = check_positive_int("batch_size", int(batch_size))
    resize = None if frame_size is None else (lambda pixels: resize_frames(pixels, frame_size))
    batch = []
    for _, clip in stream_clips(path, indices, resize):
        batch.append(clip)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def clip_progress(description, enabled=True, batch_size=1):
    """A ``progress`` factory for `VideoClient.predict_video` and `timeline.predict_timeline`: a `Progress`
    that counts clips, shown only when they need more than one batch."""
    return lambda total: Progress(total, description, enabled=enabled and total > batch_size, unit="clip")


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def aggregate(scores, score_kind="probabilities", method="logits"):
    """(K, C) clip scores -> (C,) video probabilities (see the module docstring)."""
    check_choice("method", method, AGGREGATIONS)
    check_choice("score_kind", score_kind, SCORE_KINDS)
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or not len(scores):
        raise ValueError(f"scores must be (clips, classes) with clips >= 1; received shape {scores.shape}")
    if method == "logits":
        logits = scores if score_kind == "logits" else np.log(np.maximum(scores, _TINY))
        return softmax(logits.mean(axis=0))
    probabilities = scores if score_kind == "probabilities" else softmax(scores)
    return probabilities.mean(axis=0)


def class_name(class_names, index):
    return class_names[index] if index < len(class_names) and class_names[index] else f"class_{index}"


def clip_len_from_shape(dims, where):
    """T of a served ``(B, T, H, W, 3)`` input shape (dims as ints; -1 unknown)."""
    dims = [int(d) for d in dims]
    if len(dims) != 5 or dims[1] < 1:
        raise ServingError(f"{where}: the served input shape ({dims or 'unknown rank'}) does not fix the frame "
                           "count; pass clip_len=")
    return dims[1]


def uint8_clips(clips):
    """``clips`` as a NumPy array after checking it is what a request carries: uint8 ``(B, T, H, W, C)``."""
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5:
        raise ValueError(f"clips must be uint8 (B, T, H, W, 3); received {clips.dtype} {clips.shape}")
    return clips


class VideoClient:
    """The shared video -> clips -> scores -> aggregate loop; subclasses implement `predict_clips`."""

    def __init__(self, clip_len, class_names=None, frame_size=None):
        self._clip_len = int(clip_len) if clip_len is not None else None
        self.class_names = list(class_names or [])
        self.frame_size = None if frame_size is None else [int(v) for v in frame_size]

    @property
    def clip_len(self):
        """Frames per clip: given, or read once from the served signature's input shape."""
        if self._clip_len is None:
            self._clip_len = self.served_clip_len()
        return self._clip_len

    def served_clip_len(self):
        raise ValueError("this client does not know the model's frame count; pass clip_len=")

    def predict_clips(self, clips):
        """uint8 ``(B, T, H, W, 3)`` -> dict of numpy outputs, one row per clip."""
        raise NotImplementedError

    def _learn_names(self, outputs, num_classes):
        """Fills the class names from a response's ``top_k_indices`` / ``top_k_classes``; an index outside
        the response's ``num_classes`` scores (or `MAX_CLASSES`) is a `ServingError`, never a longer list."""
        if "top_k_indices" not in outputs or "top_k_classes" not in outputs:
            return
        bound = max(len(self.class_names), min(int(num_classes), MAX_CLASSES))
        for row_i, row_c in zip(np.asarray(outputs["top_k_indices"]), np.asarray(outputs["top_k_classes"])):
            for index, name in zip(row_i.tolist(), row_c.tolist()):
                name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
                if not isinstance(index, int) or not 0 <= index < bound:
                    raise ServingError(f"the server answered class index {index!r}, outside the {bound} classes "
                                       "of its scores")
                if index >= len(self.class_names):
                    self.class_names += [""] * (index + 1 - len(self.class_names))
                if not self.class_names[index]:
                    self.class_names[index] = name

    def score_clips(self, clips, kind=None, attention=False):
        """uint8 clips ``(B, T, H, W, 3)`` -> ``(scores (B, C) float64, kind, None)``: the response's
        ``kind`` output (default its logits, else its probabilities). Clients that see the model's
        attention (`KerasClient`) return it third when ``attention``."""
        outputs = self.predict_clips(clips)
        kind = kind or next((k for k in SCORE_KINDS if k in outputs), None)
        if kind not in outputs:
            raise ServingError(f"the response has no 'logits' or 'probabilities': {sorted(outputs)}")
        scores = np.asarray(outputs[kind], np.float64).reshape(len(clips), -1)
        self._learn_names(outputs, scores.shape[1])
        return scores, kind, None

    def score_batches(self, batches, total, progress=None, attention=False):
        """Scores every batch of clips (an iterable of uint8 ``(b, T, H, W, 3)``; ``total`` clips in all)
        and returns `ClipScores`. ``progress``: None or a factory ``progress(total) -> bar`` with
        ``update(n)`` and ``close()`` (e.g. `clip_progress`)."""
        bar = progress(total) if progress is not None else None
        scores, rows, kind = [], [], None
        try:
            for batch in batches:
                batch_scores, kind, batch_rows = self.score_clips(batch, kind, attention)
                scores.append(batch_scores)
                if batch_rows is not None:
                    rows.append(batch_rows)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return ClipScores(np.concatenate(scores), kind, np.concatenate(rows) if rows else None)

    def predict_video(self, path, clips="cover", batch_size=4, stride=1, top=5, method="logits", progress=None):
        """Classifies the video at ``path``.

        Args:
            clips: ``"cover"`` (the reference's non-overlapping multi-clip cover), ``"center"`` or K.
            batch_size: clips per request.
            progress: ``None`` or a factory ``progress(total) -> bar`` with ``update(n)`` and ``close()``
                (e.g. `clip_progress`).

        Returns:
            A `VideoPrediction`. Raises `VideoDecodeError` (naming the file) for a video that will not decode.
        """
        path = os.fspath(path)
        num_frames, indices = sample_clips(path, self.clip_len, clips, stride)
        scored = self.score_batches(clip_batches(path, indices, batch_size, self.frame_size), len(indices),
                                    progress)
        probabilities = aggregate(scored.scores, scored.kind, method)
        best = np.argsort(-probabilities, kind="stable")[:int(top)]
        ranked = [(int(k), class_name(self.class_names, int(k)), float(probabilities[k])) for k in best]
        return VideoPrediction(path, num_frames, indices, scored.scores, scored.kind, probabilities, ranked,
                               list(self.class_names))
