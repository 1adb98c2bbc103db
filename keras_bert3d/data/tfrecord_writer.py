"""Writing TFRecord shards of whole videos (`bert3d to-tfrecord`); the format is `keras_bert3d.data.tfrecord`'s.

Shards are ``<prefix>-00003-of-00016.tfrecord`` in ``out_dir``; ``<prefix>-manifest.json`` records
the settings, which videos went to which shard, the bad videos skipped (with reasons) and the
index's missing entries. Videos are spread over the shards in a seeded random order, so every
shard holds every class. Writing is parallel over videos (worker processes decode, resize and
JPEG-encode; the parent writes), each shard is written to ``<name>.tmp`` and renamed when
complete, and a rerun skips the complete shards. Workers run `_encode_record` and never import TensorFlow.
"""
import hashlib
import json
import os

import numpy as np

from keras_bert3d.data.jpeg_frames import decode_jpeg, encode_jpeg, resize_bilinear, video_chunks
from keras_bert3d.data.parallel import ordered_map
from keras_bert3d.data.tfrecord import FEATURE_LISTS, manifest_path, shard_name
from keras_bert3d.progress import Progress
from keras_bert3d.validation import check_choice, check_int_range, check_positive_int, check_positive_ints

TARGET_SHARD_BYTES = 150 * 2**20  # ~100-200 MB per shard when num_shards is None
MANIFEST_VERSION = 1
# A record (one video's example) must serialise below protobuf's 2 GB message limit, or writing fails the shard on
# every rerun. A video whose JPEG frames pass this (less room for the per-frame framing and the context) is skipped
# and named in the manifest's ``bad`` list as soon as its encoded frames pass it, so a worker never holds more.
MAX_RECORD_BYTES = 2**31 - 2**24


class RecordTooLarge(ValueError):
    """A video whose example would pass protobuf's 2 GB limit; the message names it and says what to do."""

    def __init__(self, path, frames, size):
        super().__init__(f"{path}: over protobuf's 2 GB record limit ({size} bytes of JPEG frames after {frames} "
                         f"frames, more than {MAX_RECORD_BYTES}): skipped; write it with a smaller frame size or "
                         "JPEG quality, or cut it into shorter videos")


class _RecordBudget:
    """Counts a record's JPEG bytes as they are encoded; `RecordTooLarge` once they pass `MAX_RECORD_BYTES`."""

    def __init__(self, path):
        self.path, self.size, self.frames = path, 0, 0

    def add(self, jpeg):
        self.size, self.frames = self.size + len(jpeg) + 16, self.frames + 1  # + a frame's framing
        if self.size > MAX_RECORD_BYTES:
            raise RecordTooLarge(self.path, self.frames, self.size)
        return jpeg


def _frame_paths(folder, count, modality):
    from keras_bert3d.data.frame_folders import frame_files

    indices = np.arange(count)
    if modality == "rgb":
        return {"frames": list(frame_files(folder, indices, "rgb"))}
    pairs = frame_files(folder, indices, "flow")  # [(flow_x, flow_y), ...]
    return {"flow_x": [x for x, _ in pairs], "flow_y": [y for _, y in pairs]}


def _is_jpeg(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.format == "JPEG", image.size[::-1]


def _encode_folder(folder, modality, frame_size, quality):
    """A frame folder's JPEG lists; files are kept byte for byte unless resized (or not JPEG)."""
    from keras_bert3d.data.frame_folders import count_frames

    count = count_frames(folder, modality)  # raises VideoDecodeError when there are none
    lists = _frame_paths(folder, count, modality)
    is_jpeg, shape = _is_jpeg(next(iter(lists.values()))[0])
    budget = _RecordBudget(folder)
    for name, paths in lists.items():
        if frame_size is None and is_jpeg:
            encoded = []
            for path in paths:
                with open(path, "rb") as f:
                    encoded.append(budget.add(f.read()))
        else:
            encoded = []
            for path in paths:
                frame = decode_jpeg(path, grayscale=modality == "flow")
                frame = frame[..., None] if frame.ndim == 2 else frame
                frame = frame if frame_size is None else resize_bilinear(frame, frame_size)
                shape = frame.shape[:2]
                encoded.append(budget.add(encode_jpeg(frame, quality)))
        lists[name] = encoded
    return lists, count, shape


def _encode_video(path, frame_size, quality):
    encoded, shape, budget = [], None, _RecordBudget(path)
    for chunk in video_chunks(path):
        if frame_size is not None:
            chunk = resize_bilinear(chunk, frame_size)
        shape = chunk.shape[1:3]
        encoded.extend(budget.add(encode_jpeg(frame, quality)) for frame in chunk)
    return {"frames": encoded}, len(encoded), shape


def _encode_record(task):
    """Worker: (path, source, modality, frame_size, quality) -> the JPEG lists, or the error."""
    path, source, modality, frame_size, quality = task
    try:
        if source == "frames":
            lists, count, shape = _encode_folder(path, modality, frame_size, quality)
        else:
            lists, count, shape = _encode_video(path, frame_size, quality)
    except (ValueError, OSError) as err:  # VideoDecodeError is a ValueError; PIL raises OSError
        return {"error": str(err)}
    return {"lists": lists, "num_frames": count, "height": int(shape[0]), "width": int(shape[1])}


def _sequence_example(record, result, modality):
    import tensorflow as tf

    def int64(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def text(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode("utf-8")]))

    context = {"label": int64(record.label), "class": text(record.class_name), "path": text(record.path),
               "num_frames": int64(result["num_frames"]), "height": int64(result["height"]),
               "width": int64(result["width"]), "modality": text(modality)}
    lists = {name: tf.train.FeatureList(feature=[tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg]))
                                                 for jpeg in result["lists"][name]])
             for name in FEATURE_LISTS[modality]}
    return tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                    feature_lists=tf.train.FeatureLists(feature_list=lists))


def _detect_modality(index):
    if index.source != "frames":
        return "rgb"
    from keras_bert3d.data.frame_folders import RGB_PREFIX

    for record in index:
        if os.path.isdir(record.path):
            return "rgb" if any(name.startswith(RGB_PREFIX) for name in os.listdir(record.path)) else "flow"
    return "rgb"


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _result_bytes(result):
    return sum(len(jpeg) for jpegs in result.get("lists", {}).values() for jpeg in jpegs) + 256


def _check_args(records, num_shards, frame_size, jpeg_quality, workers):
    """``(frame_size, jpeg_quality, workers)`` as ints, after checking them; a clear error otherwise."""
    if not records:
        raise ValueError("the index has no videos to write")
    if num_shards is not None:
        check_int_range("num_shards", int(num_shards), 1, len(records))
    if frame_size is not None:
        frame_size = check_positive_ints("frame_size", [int(v) for v in frame_size], length=2)
    workers = check_positive_int("workers", (os.cpu_count() or 1) if workers is None else int(workers))
    return frame_size, check_int_range("jpeg_quality", int(jpeg_quality), 1, 100), workers


def write_tfrecords(index, out_dir, num_shards=None, frame_size=None, jpeg_quality=90, workers=None,
                    progress=True, prefix="train", modality=None, seed=0):
    """Writes ``index`` (a `VideoIndex` of video files or frame folders) as TFRecord shards.

    Args:
        index: the videos; ``index.source`` says whether paths are files or frame folders.
        out_dir: the folder for the shards and the manifest (created).
        num_shards: the number of shards; None picks one for ~100-200 MB per shard from the
            encoded size of a first few videos (on a rerun: the manifest's).
        frame_size: ``[height, width]`` to resize every frame to before encoding (the preset's
            ``frame_size``, so training never resizes); None keeps the size.
        jpeg_quality: 1..100. Frames of a folder that is not resized keep their JPEG bytes.
        workers: worker processes (default: every core); 1 encodes in this process.
        progress: show a progress bar (tqdm if installed, else a stderr line).
        prefix: the shard name prefix, e.g. the subset ("train", "test").
        modality: "rgb" or "flow" (frame folders only); None: RGB for videos, and for frame
            folders whatever the first folder holds (``img_*`` else ``flow_*``).
        seed: the seed of the order of videos across shards.

    Returns:
        The manifest (a dict, also in ``<out_dir>/<prefix>-manifest.json``): ``shards`` (name ->
        ``videos``, ``bad`` [{path, reason}], ``bytes``), ``bad``, ``missing``, ``class_names``.

    Raises:
        ValueError: an argument is invalid, the index is empty, or ``out_dir`` holds a manifest
            written with other settings or another index.
    """
    records = list(index)
    frame_size, jpeg_quality, workers = _check_args(records, num_shards, frame_size, jpeg_quality, workers)
    modality = check_choice("modality", modality or _detect_modality(index), tuple(FEATURE_LISTS))
    if modality == "flow" and index.source != "frames":
        raise ValueError("flow TFRecords are written from flow frame folders; extract them first with `bert3d flow`")

    import tensorflow as tf

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    digest = hashlib.sha1(json.dumps([[r.path, r.label] for r in records]).encode("utf-8")).hexdigest()
    settings = {"prefix": prefix, "modality": modality, "frame_size": frame_size, "jpeg_quality": int(jpeg_quality),
                "seed": int(seed), "source": index.source, "index_sha1": digest}
    path = manifest_path(out_dir, prefix)
    manifest = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("settings") != settings or (num_shards and num_shards != manifest["num_shards"]):
            raise ValueError(f"{out_dir} already holds '{prefix}' shards written from another index or with other "
                             f"settings ({manifest.get('settings')}, {manifest.get('num_shards')} shards); "
                             "use a new output folder or delete it")
    order = np.random.default_rng(seed).permutation(len(records))
    tasks = [(r.path, index.source, modality, frame_size, int(jpeg_quality)) for r in records]

    done = {}
    with ordered_map(_encode_record, min(workers, len(records)), skip_errors=True) as run:  # skip a PIL bomb too
        if manifest is not None:
            num_shards = manifest["num_shards"]
        elif num_shards is None:  # encode a first few videos, keep them, and size the shards from them
            sample = order[:min(len(records), max(2, workers))]
            done = dict(zip(sample.tolist(), run([tasks[i] for i in sample])))
            mean = np.mean([_result_bytes(r) for r in done.values()])
            num_shards = int(np.clip(np.ceil(len(records) * mean / TARGET_SHARD_BYTES), 1, len(records)))
        if manifest is None:
            manifest = {"version": MANIFEST_VERSION, "settings": settings, "num_shards": int(num_shards),
                        "num_videos": len(records), "class_names": list(index.class_names),
                        "missing": list(index.missing), "shards": {}, "bad": []}
            _write_json(path, manifest)
        shards = np.array_split(order, num_shards)
        names = [shard_name(prefix, k, num_shards) for k in range(num_shards)]
        pending = [k for k in range(num_shards)
                   if names[k] not in manifest["shards"] or not os.path.exists(os.path.join(out_dir, names[k]))]
        todo = [i for k in pending for i in shards[k].tolist() if i not in done]
        results = iter(run([tasks[i] for i in todo]))
        with Progress(sum(len(shards[k]) for k in pending), f"to-tfrecord {prefix}", enabled=progress) as bar:
            for k in pending:
                final = os.path.join(out_dir, names[k])
                entry = {"videos": [], "bad": [], "bytes": 0}
                with tf.io.TFRecordWriter(final + ".tmp") as writer:
                    for i in shards[k].tolist():
                        result = done.pop(i) if i in done else next(results)
                        if "error" in result:
                            entry["bad"].append({"path": records[i].path, "reason": result["error"]})
                        else:
                            writer.write(_sequence_example(records[i], result, modality).SerializeToString())
                            entry["videos"].append(records[i].path)
                        bar.update(1, postfix=f"shard {k + 1}/{num_shards}")
                entry["bytes"] = os.path.getsize(final + ".tmp")
                manifest["shards"][names[k]] = entry
                manifest["bad"] = [bad for name in names if name in manifest["shards"]
                                   for bad in manifest["shards"][name]["bad"]]
                _write_json(path, manifest)  # the entry first: a shard on disk always has its record
                os.replace(final + ".tmp", final)
    return manifest

