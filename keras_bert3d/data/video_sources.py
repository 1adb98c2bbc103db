"""Where `make_dataset` gets each video's frames: video files, frame folders or TFRecord shards.

`load_frames` turns an index (or shards) into a dataset of ``(uint8 frames resized to frame_size, label,
element seed)``, one element per usable video. Which frames a video gives is the `ClipPlan`'s choice (NumPy,
run inside ``tf.numpy_function``), and so is what happens to bad input: a video that breaks mid-stream is
sampled from the frames before the damage when they hold a clip and half its frames; other bad input is
skipped and counted in the plan's `BadVideoCounter`, or raised with ``strict``.

TFRecord shards are read in pure TF (`keras_bert3d.data.sampling_ops`), so their graph can travel to tf.data
service workers: each video's seed is a hash of its ``path`` and the epoch's seed (`record_seed`), so its clip
does not depend on which worker reads it, nor in what order. Bad records are still counted in Python locally
(`keras_bert3d.data.dropped_records`); a served plan (``served=True``) drops them with
``ignore_errors(log_warning=True)``, which logs them on the worker that read them.
"""
import os

import numpy as np
import tensorflow as tf

from keras_bert3d.data import sampling, sampling_ops, transforms
from keras_bert3d.data.dropped_records import counted_map, read_shards
from keras_bert3d.data.video_reader import VideoDecodeError, read_frames

TFRECORD_SHUFFLE_BUFFER = 256  # parsed examples (JPEG bytes) held for shuffling
SERVED_CYCLE = 2  # shards a tf.data service worker reads at once (interleaved)
# A video that breaks mid-stream is used up to the damage when that part holds a clip and at least this share of
# its frames (else skipped and counted): most of the labelled action is still there.
DAMAGED_MIN_FRACTION = 0.5
# Why `counted_map` dropped a video whose frames are all there but will not decode (reasons for `BadVideoCounter`).
CORRUPT_RECORD = "corrupt frame data in its TFRecord example (a JPEG that will not decode)"
CORRUPT_FRAME = "corrupt frame file (a JPEG that will not decode)"
SAMPLING_STREAM = 2  # the second word of a TFRecord video's stateless sampling seed (transforms use 0, mixup 1)


class FrameFileError(ValueError):
    """A frame file of a frame folder that is missing, empty or cut short; the message names the folder."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class ClipPlan:
    """Which frames each video gives (NumPy, run inside ``tf.numpy_function``; TF ops for TFRecords), and the
    error policy. ``served``: the graph goes to tf.data service workers (pure TF, bad records dropped there)."""

    def __init__(self, mode, clip_len, stride, jitter, clips_per_video, modality, strict, counter, served=False):
        self.mode, self.clip_len, self.stride, self.jitter = mode, clip_len, stride, jitter
        self.clips_per_video, self.modality, self.strict, self.counter = clips_per_video, modality, strict, counter
        self.served = bool(served)

    def indices(self, num_frames, seed):
        if self.mode == "train":
            rng = np.random.default_rng(int(seed) % 2**63)
            return sampling.train_indices(num_frames, self.clip_len, rng, self.stride, self.jitter)
        if self.mode == "val":
            return sampling.val_indices(num_frames, self.clip_len, self.stride)
        return sampling.eval_clips(num_frames, self.clip_len, self.clips_per_video, self.stride).reshape(-1)

    def graph_indices(self, num_frames, seed):
        """`indices` in TF ops (`sampling_ops`): int32; train draws from the int64 element ``seed``."""
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(SAMPLING_STREAM, tf.int64)])
        return tf.cast(sampling_ops.clip_indices(self.mode, num_frames, self.clip_len, seed, self.stride, self.jitter,
                                                 self.clips_per_video), tf.int32)

    def skip(self, path, err, empty):
        if self.strict or isinstance(err, MemoryError):  # out of memory: the machine's problem, not the file's
            raise err
        self.counter.add(path, getattr(err, "reason", None) or f"cannot be read ({type(err).__name__}: {err})")
        return empty, False

    def video(self, path, num_frames, seed):
        path = path.decode("utf-8")
        try:
            counts = [int(num_frames)] if num_frames > 0 else []  # the index's count, else the file's

            def choose(count):  # called by read_frames with the file open: one open per clip
                counts.append(count)
                return self.indices(counts[0], seed)

            try:
                return read_frames(path, choose), True
            except VideoDecodeError as err:  # broken mid-stream: the part before the damage, if it holds a clip
                if not counts:
                    raise
                enough = max(sampling.clip_span(self.clip_len, self.stride), DAMAGED_MIN_FRACTION * counts[0])
                if self.strict or (err.decodable or 0) < enough:
                    raise
                self.counter.note_damaged(path, err.reason)
                return read_frames(path, self.indices(err.decodable, seed)), True
        except Exception as err:  # VideoDecodeError, or anything else PyAV raises: never stop training
            return self.skip(path, err, np.zeros((0, 1, 1, 3), np.uint8))

    def frames(self, folder, num_frames, seed):
        from keras_bert3d.data.frame_folders import count_frames, frame_files

        folder = folder.decode("utf-8")
        width = 1 if self.modality == "rgb" else 2
        try:  # count_frames and frame_files raise VideoDecodeError for a missing or short folder
            num_frames = int(num_frames) if num_frames > 0 else count_frames(folder, self.modality)
            files = frame_files(folder, self.indices(num_frames, seed), self.modality, num_frames)
            files = [files] if self.modality == "rgb" else [list(column) for column in zip(*files)]
            for name in set(name for column in files for name in column):
                _check_frame_file(folder, name)
            names = [[os.fsencode(name) for name in column] for column in files]
            return np.array(names, dtype=object).T.reshape(-1, width), True
        except Exception as err:  # FrameFileError, OSError: never stop training
            return self.skip(folder, err, np.empty((0, width), dtype=object))


def _check_frame_file(folder, name):
    name = os.fspath(name)
    if not os.path.isfile(name):
        raise FrameFileError(folder, f"missing frame file {os.path.basename(name)}")
    size = os.path.getsize(name)
    if size == 0:
        raise FrameFileError(folder, f"empty frame file {os.path.basename(name)}")
    with open(name, "rb") as f:
        head = f.read(2)
        f.seek(max(size - 2, 0))
        tail = f.read(2)
    if head == b"\xff\xd8" and tail != b"\xff\xd9":  # a JPEG cut short
        raise FrameFileError(folder, f"truncated frame file {os.path.basename(name)}")


def _decode_frame_files(files, channels, frame_size):
    """uint8 ``(N, H, W, C)`` from a ``(N, 1)`` (RGB) or ``(N, 2)`` (flow x, y) string tensor, resized."""
    width = 1 if channels == 3 else 2

    def decode(row):
        planes = [tf.io.decode_jpeg(tf.io.read_file(row[k]), channels=channels, dct_method="INTEGER_ACCURATE")
                  for k in range(width)]
        return transforms.resize(tf.concat(planes, -1), frame_size)

    return tf.map_fn(decode, tf.reshape(files, [-1, width]),
                     fn_output_signature=tf.TensorSpec([*frame_size, channels * width], tf.uint8))


def video_records(index, shuffle, seed, reshuffle):
    """``(path, label, num_frames or -1)`` per record of a `VideoIndex`, shuffled when ``shuffle``."""
    records = list(index)
    paths = [os.fspath(r.path) for r in records]
    counts = [int(r.num_frames) if r.num_frames else -1 for r in records]
    dataset = tf.data.Dataset.from_tensor_slices((paths, [int(r.label) for r in records], counts))
    if shuffle:
        dataset = dataset.shuffle(max(len(records), 1), seed=seed, reshuffle_each_iteration=reshuffle)
    return dataset


def _tfrecord_examples(pattern, modality, shuffle, seed, reshuffle, plan):
    from keras_bert3d.data import tfrecord

    files = tfrecord.list_shards(pattern)
    if tfrecord.shard_modality(files) != modality:
        raise ValueError(f"{files[0]} holds {tfrecord.shard_modality(files)} frames but the preprocessing is "
                         f"for {modality}")
    if plan.served:
        records = _served_records(files, shuffle, seed, plan.strict)
        return records.map(lambda raw: tfrecord.parse_example(raw, modality))
    if not plan.strict:  # a damaged shard's lost records are counted and named
        dataset = read_shards(files, plan.counter, shuffle, seed, reshuffle)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(files)
        if shuffle:
            dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=reshuffle)
        dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), deterministic=True,
                                     num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(TFRECORD_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=reshuffle)
    return dataset.map(lambda raw: tfrecord.parse_example(raw, modality), num_parallel_calls=tf.data.AUTOTUNE)


def _served_records(files, shuffle, seed, strict):
    """The raw records of ``files`` for tf.data service workers. The shard list is what the dispatcher splits: it
    hands the shards out one at a time, in an order drawn from ``seed`` with ``shuffle``. A worker reads
    `SERVED_CYCLE` shards at once, with no shuffle buffer and no read-ahead of shards, so a dead worker takes
    few shards with it. Without ``strict``, a damaged shard gives its records up to the damage and the loss is
    logged on the worker."""
    if shuffle:
        files = [files[k] for k in np.random.default_rng(seed).permutation(len(files))]

    def read(path):
        records = tf.data.TFRecordDataset(path)
        return records if strict else records.ignore_errors(log_warning=True)

    return tf.data.Dataset.from_tensor_slices(files).interleave(read, cycle_length=min(len(files), SERVED_CYCLE))


def record_seed(epoch_seed, path):
    """A TFRecord video's int64 seed: a fingerprint of its ``path`` and the int64 ``epoch_seed`` (so a clip does not
    depend on which worker reads the video, nor in what order)."""
    key = tf.strings.join([tf.strings.as_string(tf.cast(epoch_seed, tf.int64)), path], separator=":")
    return tf.strings.to_hash_bucket_fast(key, 2**63 - 1)


def _with_epoch_seed(examples, seed, reshuffle, served):
    """``(example, epoch seed)`` pairs. The epoch seed is ``seed`` (or one fresh draw when None); locally with
    ``reshuffle`` each iteration draws another from ``seed``. A served graph carries it as a constant: every
    worker, and every iteration, uses the same."""
    if reshuffle and not served:
        draw = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        return tf.data.Dataset.zip(examples, draw.flat_map(lambda s: tf.data.Dataset.from_tensors(s).repeat()))
    epoch = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1, np.uint64)[0]) >> 1
    return examples.map(lambda example: (example, tf.constant(epoch, tf.int64)))


def load_frames(index, source, plan, seeds, frame_size, shuffle, seed, reshuffle, calls, deterministic):
    """``(frames, label, element seed)`` per usable video of ``index`` (a `VideoIndex`, or shards for
    ``source="tfrecord"``), frames uint8 resized to ``frame_size``; ``seeds`` gives each video its seed (TFRecords:
    `record_seed` from the epoch's seed: ``seed``, or a draw from it per iteration with ``reshuffle``)."""
    modality = plan.modality
    if source == "tfrecord":
        from keras_bert3d.data.tfrecord import decode_frames

        examples = _tfrecord_examples(index, modality, shuffle, seed, reshuffle, plan)

        def load(example, epoch_seed):
            elem_seed = record_seed(epoch_seed, example["path"])
            indices = plan.graph_indices(example["num_frames"], elem_seed)
            frames = transforms.resize(decode_frames(example, indices), frame_size)
            return frames, example["label"], elem_seed

        examples = _with_epoch_seed(examples, seed, reshuffle, plan.served)
        if plan.strict or plan.served:
            return examples.map(load, num_parallel_calls=calls, deterministic=deterministic)
        return counted_map(examples, load, lambda example, epoch_seed: example["path"], CORRUPT_RECORD, plan.counter,
                           calls, deterministic)

    records = video_records(index, shuffle, seed, reshuffle)
    reader = plan.video if source == "video" else plan.frames
    out_type = tf.uint8 if source == "video" else tf.string

    def locate(path, label, num_frames, elem_seed):
        data, ok = tf.numpy_function(reader, [path, num_frames, elem_seed], [out_type, tf.bool], stateful=True)
        return data, label, elem_seed, ok

    def load(data, label, elem_seed, ok):
        if source == "video":  # frames of the model's size already (340x256 Kinetics at 256x340) stay as they are
            frames = transforms.resize(tf.ensure_shape(data, [None, None, None, 3]), frame_size)
        else:
            frames = _decode_frame_files(data, 3 if modality == "rgb" else 1, frame_size)
        return frames, label, elem_seed

    dataset = tf.data.Dataset.zip(records, seeds).map(lambda r, s: locate(*r, s), num_parallel_calls=calls,
                                                      deterministic=deterministic)
    dataset = dataset.filter(lambda data, label, elem_seed, ok: tf.ensure_shape(ok, []))
    if source == "video" or plan.strict:
        return dataset.map(load, num_parallel_calls=calls, deterministic=deterministic)
    return counted_map(dataset, load, lambda data, *_: tf.strings.regex_replace(data[0][0], r"[/\\][^/\\]*$", ""),
                       CORRUPT_FRAME, plan.counter, calls, deterministic)
