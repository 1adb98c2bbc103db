"""`make_dataset`: a video index (or TFRecord shards) -> a `tf.data.Dataset` of normalised clips.

Sources: ``"video"`` files decoded with PyAV inside ``tf.numpy_function`` (a parallel map, so decoding
runs on every core), ``"frames"`` folders whose JPEGs are read and decoded in-graph, and ``"tfrecord"``
shards (`keras_bert3d.data.tfrecord`) decoded in-graph. Only the frames a clip needs are decoded.

Per mode (REFERENCE.md 5.6-5.10, 5.12): frames are resized to the preset's ``frame_size``; train takes a
random clip, multi-scale crop and a clip-wide flip; val the centred clip and the centre crop; test the
clips of ``clips_per_video`` times ``crops_per_clip`` crops. Every random draw comes from a per-video
seed, so with ``seed`` set two runs give the same batches whatever the parallelism.

A video that breaks mid-stream (corrupt packets after good ones, a cut tail) is sampled from the frames
before the damage when they hold a clip and half its frames (`BadVideoCounter.damaged` lists it). Other
bad input (missing / empty / not a video / truncated / too few frames, a missing or broken frame file)
is skipped and counted in a `BadVideoCounter` (``dataset.bad_videos``; report it each epoch with
`BadVideoReport`); ``strict=True`` raises instead (``tf.errors.InvalidArgumentError`` whose message names
the file). A JPEG that is complete but undecodable is dropped by ``ignore_errors`` (logged, not counted).
"""
import os

import numpy as np
import tensorflow as tf

from keras_bert3d.data import sampling, transforms
from keras_bert3d.data.bad_videos import BadVideoCounter
from keras_bert3d.data.video_reader import VideoDecodeError, probe, read_frames

MODES = ("train", "val", "test")
SOURCES = ("auto", "video", "frames", "tfrecord")
TFRECORD_SHUFFLE_BUFFER = 256  # parsed examples (JPEG bytes) held for shuffling
# A video that breaks mid-stream is used up to the damage when that part holds a clip and at least this share of
# its frames (else skipped and counted): most of the labelled action is still there.
DAMAGED_MIN_FRACTION = 0.5


class _FrameError(ValueError):
    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def _check_args(preprocessing, mode, batch_size, source, crops_per_clip, clips_per_video, mixup, cutmix):
    from keras_bert3d.models.video_preprocessor import check_preprocessing

    check_preprocessing(preprocessing)  # the preprocessor's own size and channel rules
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; received mode={mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; received batch_size={batch_size!r}")
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}; received source={source!r}")
    if crops_per_clip not in (1, 3, 10):
        raise ValueError(f"`crops_per_clip` must be 1, 3 or 10; received crops_per_clip={crops_per_clip!r}")
    sampling.eval_clips(64, 8, clips_per_video)  # validates clips_per_video
    for name, value in (("mixup", mixup), ("cutmix", cutmix)):
        if value < 0 or (value > 0 and mode != "train"):
            raise ValueError(f"`{name}` must be >= 0 and is for mode='train' only; received {name}={value}")


class _Plan:
    """Which frames each video gives (NumPy, run inside ``tf.numpy_function``), and the error policy."""

    def __init__(self, mode, clip_len, stride, jitter, clips_per_video, modality, strict, counter):
        self.mode, self.clip_len, self.stride, self.jitter = mode, clip_len, stride, jitter
        self.clips_per_video, self.modality, self.strict, self.counter = clips_per_video, modality, strict, counter

    def indices(self, num_frames, seed):
        if self.mode == "train":
            rng = np.random.default_rng(int(seed) % 2**63)
            return sampling.train_indices(num_frames, self.clip_len, rng, self.stride, self.jitter)
        if self.mode == "val":
            return sampling.val_indices(num_frames, self.clip_len, self.stride)
        return sampling.eval_clips(num_frames, self.clip_len, self.clips_per_video, self.stride).reshape(-1)

    def skip(self, path, err, empty):
        if self.strict:
            raise err
        self.counter.add(path, getattr(err, "reason", None) or f"cannot be read ({type(err).__name__}: {err})")
        return empty, False

    def video(self, path, num_frames, seed):
        path = path.decode("utf-8")
        try:
            num_frames = int(num_frames) if num_frames > 0 else probe(path).num_frames
            try:
                return read_frames(path, self.indices(num_frames, seed)), True
            except VideoDecodeError as err:  # broken mid-stream: the part before the damage, if it holds a clip
                enough = max(sampling.clip_span(self.clip_len, self.stride), DAMAGED_MIN_FRACTION * num_frames)
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
        except Exception as err:  # _FrameError, OSError: never stop training
            return self.skip(folder, err, np.empty((0, width), dtype=object))


def _check_frame_file(folder, name):
    name = os.fspath(name)
    if not os.path.isfile(name):
        raise _FrameError(folder, f"missing frame file {os.path.basename(name)}")
    size = os.path.getsize(name)
    if size == 0:
        raise _FrameError(folder, f"empty frame file {os.path.basename(name)}")
    with open(name, "rb") as f:
        head = f.read(2)
        f.seek(max(size - 2, 0))
        tail = f.read(2)
    if head == b"\xff\xd8" and tail != b"\xff\xd9":  # a JPEG cut short
        raise _FrameError(folder, f"truncated frame file {os.path.basename(name)}")


def _decode_frame_files(files, channels, frame_size):
    """uint8 ``(N, H, W, C)`` from a ``(N, 1)`` (RGB) or ``(N, 2)`` (flow x, y) string tensor, resized."""
    width = 1 if channels == 3 else 2

    def decode(row):
        planes = [tf.io.decode_jpeg(tf.io.read_file(row[k]), channels=channels, dct_method="INTEGER_ACCURATE")
                  for k in range(width)]
        return transforms.resize(tf.concat(planes, -1), frame_size)

    return tf.map_fn(decode, tf.reshape(files, [-1, width]),
                     fn_output_signature=tf.TensorSpec([*frame_size, channels * width], tf.uint8))


def _transform(frames, seed, mode, prep, num_views, crops_per_clip):
    """Resized uint8 frames -> the normalised clip (train/val) or views (test) of one video."""
    length, size, channels = prep["num_frames"], prep["crop_size"], len(prep["mean"])
    seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    frames = tf.ensure_shape(frames, [None, *prep["frame_size"], channels])
    if mode == "train":
        clip = transforms.random_flip(transforms.multi_scale_crop(frames, size, seed=seed), seed=seed)
    elif mode == "val":
        clip = transforms.center_crop(frames, size)
    else:  # crop-major views, as the reference stacks them: view = crop * num_clips + clip
        crops = transforms.multi_crops(frames, size, crops_per_clip)
        clip = tf.reshape(crops, [-1, length, size, size, channels])
        return tf.ensure_shape(transforms.normalize(clip, prep), [num_views, length, size, size, channels])
    return tf.ensure_shape(transforms.normalize(clip, prep), [length, size, size, channels])


def _records(index):
    records = list(index)
    paths = [os.fspath(r.path) for r in records]
    counts = [int(r.num_frames) if r.num_frames else -1 for r in records]
    return tf.data.Dataset.from_tensor_slices((paths, [int(r.label) for r in records], counts))


def _tfrecord_dataset(pattern, modality, shuffle, seed, reshuffle):
    from keras_bert3d.data import tfrecord

    files = tfrecord.list_shards(pattern)
    if tfrecord.shard_modality(files) != modality:
        raise ValueError(f"{files[0]} holds {tfrecord.shard_modality(files)} frames but the preprocessing is "
                         f"for {modality}")
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=reshuffle)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), deterministic=True,
                                 num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(TFRECORD_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=reshuffle)
    return dataset.map(lambda raw: tfrecord.parse_example(raw, modality), num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(index, preprocessing, mode="train", batch_size=8, source="auto", shuffle=None, seed=None,
                 strict=False, num_parallel_calls=tf.data.AUTOTUNE, clips_per_video="center", crops_per_clip=10,
                 stride=1, temporal_jitter=False, mixup=0.0, cutmix=0.0, num_classes=None, drop_remainder=False,
                 counter=None, reshuffle_each_iteration=True):
    """The input pipeline of one split.

    Args:
        index: a `VideoIndex` (video files or frame folders), or a TFRecord glob/folder.
        preprocessing: a preset's ``preprocessing`` dict (``model.preprocessing``): clip length, frame
            size, crop size and normalisation.
        mode: ``"train"`` (random clip, multi-scale crop, flip), ``"val"`` (centred clip, centre crop) or
            ``"test"`` (every view of a video as one element, see Returns).
        batch_size: clips per batch (train/val; test elements are whole videos, never batched).
        source: ``"auto"`` (TFRecord for a path, else ``index.source``), ``"video"``, ``"frames"`` or
            ``"tfrecord"``.
        shuffle: shuffle the videos each epoch; None: in train mode only.
        seed: makes sampling, augmentation and order reproducible; None draws fresh randomness.
        reshuffle_each_iteration: True: each new iteration of the dataset (an epoch of ``model.fit``) draws
            new clips, crops and order (from ``seed``: the n-th iteration is the same in every run). False:
            every iteration gives the same elements, so what a consumer reads does not depend on how often
            the dataset was opened before (keras_bert3d's training builds one dataset per epoch, from a seed
            of its own, and Keras' JAX ``fit`` opens a dataset once more than TF's to build the model).
        strict: raise on the first bad video instead of skipping it.
        num_parallel_calls: decoding and transform parallelism.
        clips_per_video: test clips: ``"center"`` (the BERT test script's single centred clip), ``"cover"``
            (the reference's non-overlapping multi-clip cover) or an int K (K uniform clips).
        crops_per_clip: test crops: 1 (centre), 3 (along the long side) or 10 (reference ten-crop).
        stride: frame step inside a clip (1 = the reference).
        temporal_jitter: train only: jitter each frame inside its stride step.
        mixup, cutmix: train only: Beta alpha of mixup / cutmix on each batch (0 = off; both > 0: one of
            the two per batch). Labels become one-hot float32 ``(B, num_classes)``.
        num_classes: for mixup/cutmix; default ``index.num_classes``.
        drop_remainder: drop the last incomplete batch.
        counter: a `BadVideoCounter` to count skipped videos in (shared by several datasets); default a
            new one. Either way it is ``dataset.bad_videos``.

    Returns:
        A prefetched `tf.data.Dataset`. train/val: ``(clips, labels)`` with clips float32
        ``(B, T, S, S, C)`` normalised and labels int32 ``(B,)``. test: one element per video,
        ``(views, label)`` with views float32 ``(N, T, S, S, C)``, ``N = crops_per_clip * clips``, crop-major
        (view ``k`` is crop ``k // clips`` of clip ``k % clips``); average the logits over ``N``.
        Elements follow the index order when ``shuffle`` is off, minus skipped videos.
    """
    prep = dict(preprocessing)
    _check_args(prep, mode, batch_size, source, crops_per_clip, clips_per_video, mixup, cutmix)
    if not isinstance(index, (str, os.PathLike)) and not len(index):
        raise ValueError(f"the index has no videos; received index={index!r}")
    if source == "auto":
        source = "tfrecord" if isinstance(index, (str, os.PathLike)) else getattr(index, "source", "video")
    modality = prep["modality"]
    if source == "video" and modality != "rgb":
        raise ValueError(f"the video source gives RGB frames; received preprocessing for {modality!r}: "
                         "extract flow into frame folders (`bert3d flow`) and use source='frames'")
    if (mixup or cutmix) and num_classes is None:
        num_classes = getattr(index, "num_classes", None)
        if num_classes is None:
            raise ValueError("mixup/cutmix need `num_classes` with a TFRecord source")
    shuffle = mode == "train" if shuffle is None else bool(shuffle)
    counter = BadVideoCounter() if counter is None else counter
    plan = _Plan(mode, int(prep["num_frames"]), int(stride), bool(temporal_jitter), clips_per_video, modality,
                 bool(strict), counter)
    num_views = None
    if mode == "test" and clips_per_video != "cover":
        num_views = crops_per_clip * (1 if clips_per_video == "center" else int(clips_per_video))
    frame_size = [int(v) for v in prep["frame_size"]]
    calls = num_parallel_calls
    deterministic = seed is not None or mode != "train"
    reshuffle = bool(reshuffle_each_iteration)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle)

    if source == "tfrecord":
        from keras_bert3d.data.tfrecord import decode_frames

        examples = _tfrecord_dataset(index, modality, shuffle, seed, reshuffle)

        def load(example, elem_seed):
            indices = tf.numpy_function(lambda n, s: plan.indices(int(n), s).astype(np.int32),
                                        [example["num_frames"], elem_seed], tf.int32, stateful=False)
            frames = transforms.resize(decode_frames(example, indices), frame_size)
            return frames, example["label"], elem_seed

        dataset = tf.data.Dataset.zip(examples, seeds).map(load, num_parallel_calls=calls, deterministic=deterministic)
    else:
        records = _records(index)
        if shuffle:
            records = records.shuffle(max(len(index), 1), seed=seed, reshuffle_each_iteration=reshuffle)
        reader = plan.video if source == "video" else plan.frames
        out_type = tf.uint8 if source == "video" else tf.string

        def locate(path, label, num_frames, elem_seed):
            data, ok = tf.numpy_function(reader, [path, num_frames, elem_seed], [out_type, tf.bool], stateful=True)
            return data, label, elem_seed, ok

        def load(data, label, elem_seed, ok):
            if source == "video":
                frames = transforms.resize(tf.ensure_shape(data, [None, None, None, 3]), frame_size)
            else:
                frames = _decode_frame_files(data, 3 if modality == "rgb" else 1, frame_size)
            return frames, label, elem_seed

        dataset = tf.data.Dataset.zip(records, seeds).map(lambda r, s: locate(*r, s), num_parallel_calls=calls,
                                                          deterministic=deterministic)
        dataset = dataset.filter(lambda data, label, elem_seed, ok: tf.ensure_shape(ok, []))
        dataset = dataset.map(load, num_parallel_calls=calls, deterministic=deterministic)

    dataset = dataset.map(lambda frames, label, elem_seed: (
        _transform(frames, elem_seed, mode, prep, num_views, crops_per_clip), tf.cast(label, tf.int32), elem_seed),
        num_parallel_calls=calls, deterministic=deterministic)
    if source != "video" and not strict:
        dataset = dataset.ignore_errors(log_warning=True)
    if mode == "test":
        dataset = dataset.map(lambda views, label, elem_seed: (views, label))
    else:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        if mixup or cutmix:
            dataset = dataset.map(lambda clips, labels, elem_seeds: _mix(clips, labels, elem_seeds, mixup, cutmix,
                                                                        num_classes), num_parallel_calls=calls)
        else:
            dataset = dataset.map(lambda clips, labels, elem_seeds: (clips, labels))
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.bad_videos = counter
    return dataset


def _mix(clips, labels, elem_seeds, mixup, cutmix, num_classes):
    seed = tf.stack([elem_seeds[0], tf.constant(1, tf.int64)])
    labels = tf.one_hot(labels, num_classes)
    if mixup and cutmix:
        use_mixup = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 9)) < 0.5
        return tf.cond(use_mixup, lambda: transforms.mixup(clips, labels, mixup, seed),
                       lambda: transforms.cutmix(clips, labels, cutmix, seed))
    if mixup:
        return transforms.mixup(clips, labels, mixup, seed)
    return transforms.cutmix(clips, labels, cutmix, seed)
