"""`make_dataset`: a video index (or TFRecord shards) -> a `tf.data.Dataset` of normalised clips.

Sources (`keras_bert3d.data.video_sources`): ``"video"`` files decoded with PyAV inside ``tf.numpy_function``
(a parallel map, so decoding runs on every core), ``"frames"`` folders whose JPEGs are read and decoded
in-graph, and ``"tfrecord"`` shards (`keras_bert3d.data.tfrecord`) decoded in-graph. Only the frames a clip
needs are decoded.

Per mode (REFERENCE.md 5.6-5.10, 5.12): frames are resized to the preset's ``frame_size``; train takes a
random clip, multi-scale crop and a clip-wide flip; val the centred clip and the centre crop; test the
clips of ``clips_per_video`` times ``crops_per_clip`` crops. Every random draw comes from a per-video
seed, so with ``seed`` set two runs give the same batches whatever the parallelism.

A video that breaks mid-stream (corrupt packets after good ones, a cut tail) is sampled from the frames
before the damage when they hold a clip and half its frames (`BadVideoCounter.damaged` lists it). Other
bad input (missing / empty / not a video / truncated / too few frames, a missing or broken frame file)
is skipped and counted in a `BadVideoCounter`, which `make_dataset` returns beside the dataset (report it
each epoch with `keras_bert3d.training.bad_video_report.BadVideoReport`); ``strict=True`` raises instead
(``tf.errors.InvalidArgumentError`` whose message names the file). A JPEG that is complete but undecodable
(in a frame folder or a TFRecord example) and the records lost to a damaged TFRecord shard are counted and named
in the same counter (`keras_bert3d.data.dropped_records`).
"""
import os
import typing

import tensorflow as tf

from keras_bert3d.data import sampling, transforms
from keras_bert3d.data.bad_videos import BadVideoCounter
from keras_bert3d.data.clip_stream import TEST_ELEMENTS, stream_cycle, test_frames, view_keys
from keras_bert3d.data.service import check_service, distribute
from keras_bert3d.data.video_sources import ClipPlan, load_frames
from keras_bert3d.validation import check_choice, check_positive_int

CLIP_STREAM_RAM_BUDGET = 1 << 30  # bytes tf.data's autotuning may buffer in the clip-by-clip test stream

MODES = ("train", "val", "test")
SOURCES = ("auto", "video", "frames", "tfrecord")
CROPS_PER_CLIP = (1, 3, 10)
AUGMENTS = ("host", "device")  # where train/val crop, flip and normalise run (`_device_clip`)


class InputPipeline(typing.NamedTuple):
    """What `make_dataset` returns: ``dataset, bad_videos = make_dataset(...)``."""

    dataset: tf.data.Dataset  # the prefetched clips and labels
    bad_videos: BadVideoCounter  # the videos it skipped (and used only up to damage), counted as it runs


def _check_args(preprocessing, mode, batch_size, source, crops_per_clip, clips_per_video, mixup, cutmix,
                test_elements, augment):
    from keras_bert3d.models.video_preprocessor import check_preprocessing

    check_preprocessing(preprocessing)  # the preprocessor's own size and channel rules
    check_choice("mode", mode, MODES)
    check_positive_int("batch_size", batch_size)
    check_choice("source", source, SOURCES)
    check_choice("crops_per_clip", crops_per_clip, CROPS_PER_CLIP)
    check_choice("test_elements", test_elements, TEST_ELEMENTS)
    sampling.eval_clips(64, 8, clips_per_video)  # validates clips_per_video
    for name, value in (("mixup", mixup), ("cutmix", cutmix)):
        if value < 0 or (value > 0 and mode != "train"):
            raise ValueError(f"`{name}` must be >= 0 and is for mode='train' only; received {name}={value}")
    check_choice("augment", augment, AUGMENTS)
    if augment == "device" and (mode == "test" or mixup or cutmix):
        raise ValueError("augment='device' is for mode 'train' or 'val' without mixup/cutmix (they mix "
                         f"normalised clips on the host); received augment={augment!r}, mode={mode!r}, "
                         f"mixup={mixup}, cutmix={cutmix}")


def _transform(frames, seed, mode, prep, num_views, crops_per_clip, augment="host"):
    """Resized uint8 frames -> the normalised clip (train/val) or views (test) of one video; with
    ``augment="device"`` (train/val) the uint8 box and window of `_device_clip` instead."""
    length, size, channels = prep["num_frames"], prep["crop_size"], len(prep["mean"])
    seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    frames = tf.ensure_shape(frames, [None, *prep["frame_size"], channels])
    if augment == "device":
        return _device_clip(tf.ensure_shape(frames, [length, *prep["frame_size"], channels]), seed, mode, size)
    if mode == "train":
        clip = transforms.random_flip(transforms.multi_scale_crop(frames, size, seed=seed), seed=seed)
    elif mode == "val":
        clip = transforms.center_crop(frames, size)
    else:  # crop-major views, as the reference stacks them: view = crop * num_clips + clip
        crops = transforms.multi_crops(frames, size, crops_per_clip)
        clip = tf.reshape(crops, [-1, length, size, size, channels])
        return tf.ensure_shape(transforms.normalize(clip, prep), [num_views, length, size, size, channels])
    return tf.ensure_shape(transforms.normalize(clip, prep), [length, size, size, channels])


def _device_clip(frames, seed, mode, size):
    """``{"frames", "windows"}`` of one clip for `keras_bert3d.models.clip_augmenter.ClipAugmenter`: the
    smallest fixed-size uint8 box that holds every window the mode can draw, and the drawn window in it.

    train: the window and flip of `transforms.multi_scale_window` / `transforms.flip_draw` (the host path's
    draws, same seed), in the ``min(H, W)`` square placed to hold it (the largest multi-scale window is that
    square); val: the centre ``S x S`` crop itself, window ``[0, 0, S, S, 0]``. Per clip the device gets
    ``T * box^2 * C`` bytes instead of the host path's float32 ``4 * T * S^2 * C``: with frames ``H x W`` and
    base ``min(H, W)``, ``4 * S^2 / base^2`` times fewer in train (3.06x at 112 of 128 and at 224 of 256, the
    presets' sizes) and 4x in val, plus 20 bytes of window."""
    if mode == "val":
        window = tf.constant([0, 0, size, size, 0], tf.int32)
        return {"frames": transforms.center_crop(frames, size), "windows": window}
    height, width = frames.shape[1], frames.shape[2]
    base = min(height, width)
    y, x, h, w = transforms.multi_scale_window(height, width, size, seed=seed)
    flip = tf.cast(transforms.flip_draw(seed), tf.int32)
    box_y, box_x = tf.minimum(y, height - base), tf.minimum(x, width - base)
    box = tf.slice(frames, [0, box_y, box_x, 0], [-1, base, base, -1])
    return {"frames": tf.ensure_shape(box, [frames.shape[0], base, base, frames.shape[3]]),
            "windows": tf.stack([y - box_y, x - box_x, h, w, flip])}


def _clip_views(frames, prep, crops_per_clip):
    """One test clip's resized uint8 frames -> its ``crops_per_clip`` normalised views, crop order."""
    length, size, channels = prep["num_frames"], prep["crop_size"], len(prep["mean"])
    frames = tf.ensure_shape(frames, [length, *prep["frame_size"], channels])
    views = transforms.normalize(transforms.multi_crops(frames, size, crops_per_clip), prep)
    return tf.ensure_shape(views, [crops_per_clip, length, size, size, channels])


def make_dataset(index, preprocessing, mode="train", batch_size=8, source="auto", shuffle=None, seed=None,
                 strict=False, num_parallel_calls=tf.data.AUTOTUNE, clips_per_video="center", crops_per_clip=10,
                 stride=1, temporal_jitter=False, mixup=0.0, cutmix=0.0, num_classes=None, drop_remainder=False,
                 counter=None, reshuffle_each_iteration=True, test_elements="video", augment="host",
                 service=None):
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
        seed: makes sampling, augmentation and order reproducible; None draws fresh randomness. tf.data's
            seeded ops also read TensorFlow's global seed, so two processes give the same batches when they
            set the same one too (``keras.utils.set_random_seed``; `bert3d train` sets ``train.seed``).
            TFRecord clips without ``reshuffle_each_iteration`` are a function of ``seed`` and the path only.
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
            new one. Either way it is returned as ``bad_videos``.
        test_elements: test mode: ``"video"`` (one element holding every view of a video) or ``"clip"`` (one
            element per clip, so memory holds a few clips whatever the videos' length: what
            ``bert3d evaluate`` streams; `keras_bert3d.data.clip_stream`). Video files are resized to
            ``frame_size`` as they decode either way.
        augment: train/val: ``"host"`` (crop, flip and normalise here) or ``"device"`` (uint8 boxes and crop
            windows; `keras_bert3d.models.clip_augmenter.ClipAugmenter` finishes them on the accelerator into
            exactly the host path's clips, 3.06x (train) and 4x (val) fewer bytes at the presets' sizes:
            `_device_clip`). Not with mixup/cutmix.
        service: ``"grpc://HOST:PORT"``: read the clips through the tf.data service dispatcher there
            (`keras_bert3d.data.service`; train/val, TFRecord input only): its workers decode, sample and augment,
            each shard once per epoch (any order), and this process batches. Bad records are dropped and logged
            on the workers (not counted in ``bad_videos``); every iteration gives the clips of ``seed``.

    Returns:
        An `InputPipeline` ``(dataset, bad_videos)``: the prefetched `tf.data.Dataset` and the
        `BadVideoCounter` its skipped videos are counted in (as the dataset runs). The dataset's elements:
        train/val: ``(clips, labels)`` with clips float32 ``(B, T, S, S, C)`` normalised and labels int32 ``(B,)``;
        with ``augment="device"`` clips are ``{"frames": uint8 (B, T, box, box, C), "windows": int32 (B, 5)}``
        (box ``min(H, W)`` in train, ``S`` in val; windows ``[y, x, h, w, flip]``).
        test: one element per video, ``(views, label)`` with views float32 ``(N, T, S, S, C)``,
        ``N = crops_per_clip * clips``, crop-major
        (view ``k`` is crop ``k // clips`` of clip ``k % clips``); average the logits over ``N``.
        test with ``test_elements="clip"``: one element per clip, ``(views, label, keys)`` with views float32
        ``(crops_per_clip, T, S, S, C)`` and keys int64 ``(crops_per_clip, 4)``: per view ``[video, attempt,
        view, views]`` (`keras_bert3d.data.clip_stream.view_keys`: ``view`` is its index in the video's
        crop-major order; clips of a few videos interleave; per video keep the highest attempt whose
        ``views`` views all came: a lower one was cut short by damage, and an incomplete one was skipped).
        Elements follow the index order when ``shuffle`` is off, minus skipped videos.
    """
    prep = dict(preprocessing)
    _check_args(prep, mode, batch_size, source, crops_per_clip, clips_per_video, mixup, cutmix, test_elements, augment)
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
    plan = ClipPlan(mode, int(prep["num_frames"]), int(stride), bool(temporal_jitter), clips_per_video, modality,
                    bool(strict), counter, served=check_service(service, source, mode) is not None)
    num_views = None
    if mode == "test" and clips_per_video != "cover":
        num_views = crops_per_clip * (1 if clips_per_video == "center" else int(clips_per_video))
    frame_size = [int(v) for v in prep["frame_size"]]
    calls = num_parallel_calls
    deterministic = seed is not None or mode != "train"
    reshuffle = bool(reshuffle_each_iteration)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle)

    if mode == "test":
        dataset = test_frames(index, source, plan, seeds, frame_size, shuffle, seed, reshuffle, calls, deterministic,
                              test_elements)
    else:
        dataset = load_frames(index, source, plan, seeds, frame_size, shuffle, seed, reshuffle, calls, deterministic)
    if mode == "test" and test_elements == "clip":
        # Bounded buffers: a clip's views (crops x T x crop² float32) are megabytes, and tf.data's autotuning
        # may grow AUTOTUNE buffers with the machine's RAM; memory must not depend on the video or the load.
        dataset = dataset.map(lambda frames, label, elem_seed, position: (
            _clip_views(frames, prep, crops_per_clip), tf.cast(label, tf.int32), view_keys(position, crops_per_clip)),
            num_parallel_calls=stream_cycle(calls), deterministic=True)
        if source != "video" and not strict:
            dataset = dataset.ignore_errors(log_warning=True)
        options = tf.data.Options()
        options.autotune.ram_budget = CLIP_STREAM_RAM_BUDGET
        return InputPipeline(dataset.prefetch(2).with_options(options), counter)
    dataset = dataset.map(lambda frames, label, elem_seed: (
        _transform(frames, elem_seed, mode, prep, num_views, crops_per_clip, augment), tf.cast(label, tf.int32),
        elem_seed),
        num_parallel_calls=calls, deterministic=deterministic)
    if source != "video" and not strict:
        dataset = dataset.ignore_errors(log_warning=True)
    if service is not None:  # the clips come from the service's workers; batching stays here
        dataset = distribute(dataset, service)
    if mode == "test":
        dataset = dataset.map(lambda views, label, elem_seed: (views, label))
    else:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        if mixup or cutmix:
            dataset = dataset.map(lambda clips, labels, elem_seeds: _mix(clips, labels, elem_seeds, mixup, cutmix,
                                                                        num_classes), num_parallel_calls=calls)
        else:
            dataset = dataset.map(lambda clips, labels, elem_seeds: (clips, labels))
    return InputPipeline(dataset.prefetch(tf.data.AUTOTUNE), counter)


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
