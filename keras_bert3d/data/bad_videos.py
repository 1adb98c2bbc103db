"""Bad input never stops training: the pipeline skips a video that will not decode and counts it here.

`BadVideoCounter` is filled from the pipeline's decoding threads (thread-safe); `make_dataset` returns it beside
the dataset. `keras_bert3d.training.bad_video_report.BadVideoReport` prints (and logs) what was skipped during
each epoch.
"""
import logging
import threading

logger = logging.getLogger("keras_bert3d.data")

# (words in the reason, category); the first match wins. Reasons come from `VideoDecodeError.reason`
# and from the frame-folder checks of the pipeline.
_CATEGORIES = (
    ("damaged tfrecord", "damaged TFRecord"),  # `dropped_records`: a shard cut or corrupt mid-file
    ("corrupt frame", "corrupt frame data"),  # a JPEG that will not decode (TFRecord example or frame file)
    ("damaged or cut", "truncated"),  # broken mid-stream, too little left before the damage
    ("clip needs index", "too few frames"),
    ("too few frames", "too few frames"),
    ("missing frame", "missing frame file"),
    ("empty frame", "empty frame file"),
    ("truncated frame", "truncated frame file"),
    ("missing", "missing"),
    ("no such file", "missing"),
    ("empty", "empty"),
    ("no video frames", "empty"),
    ("pixel cap", "frames too large"),
    ("not a video", "not a video"),
    ("no video stream", "not a video"),
    ("truncated", "truncated"),
    ("corrupt", "truncated"),
    ("not found", "undecodable frames"),
    ("has no", "empty"),
)


def reason_category(reason):
    """The short category of a decoding failure's reason (``"missing"``, ``"empty"``, ``"not a video"``,
    ``"truncated"``, ``"too few frames"``, ``"missing frame file"``, ... or ``"other"``)."""
    text = str(reason).lower()
    for words, category in _CATEGORIES:
        if words in text:
            return category
    return "other"


class BadVideoCounter:
    """Counts the videos the pipeline skipped, per reason category, from any thread.

    Each skip is counted (a bad video is met again every epoch); `files` keeps one reason per file.
    The first skip of a file logs a warning on the ``keras_bert3d.data`` logger.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {}
        self._files = {}
        self._damaged = {}

    def add(self, path, reason):
        """Records one skip of ``path`` because of ``reason`` (a sentence); returns its category."""
        category = reason_category(reason)
        path = str(path)
        with self._lock:
            self._counts[category] = self._counts.get(category, 0) + 1
            first = path not in self._files
            self._files[path] = str(reason)
        if first:
            logger.warning("skipping bad video %s: %s", path, reason)
        return category

    def note_damaged(self, path, reason):
        """Records a video used only up to damage mid-stream (not a skip); the first time logs a warning."""
        path = str(path)
        with self._lock:
            first = path not in self._damaged
            self._damaged[path] = str(reason)
        if first:
            logger.warning("video damaged mid-stream, using the frames before the damage: %s: %s", path, reason)

    def damaged(self):
        """``{path: reason}`` of the videos used only up to damage mid-stream (not counted as skipped)."""
        with self._lock:
            return dict(self._damaged)

    def counts(self):
        """``{category: skips}`` so far."""
        with self._lock:
            return dict(self._counts)

    def files(self):
        """``{path: reason}`` of every file skipped so far."""
        with self._lock:
            return dict(self._files)

    @property
    def total(self):
        with self._lock:
            return sum(self._counts.values())

    def reset(self):
        with self._lock:
            self._counts.clear()
            self._files.clear()
            self._damaged.clear()

    def summary(self, counts=None):
        """One line: ``"3 bad videos skipped (missing: 2, truncated: 1)"``."""
        counts = self.counts() if counts is None else counts
        total = sum(counts.values())
        if not total:
            return "no bad videos skipped"
        parts = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        return f"{total} bad video{'s' if total != 1 else ''} skipped ({parts})"
