"""TFRecord shards of whole videos: one `tf.train.SequenceExample` per video, frames as JPEG; reading them.

One example:
- context: ``label`` (int64, 0-based), ``class`` (bytes), ``path`` (bytes, the video or frame folder
  it came from), ``num_frames``, ``height``, ``width`` (int64, of the stored frames) and ``modality``
  (bytes: ``rgb`` or ``flow``);
- feature lists: RGB: ``frames``, one RGB JPEG per frame. Flow: ``flow_x`` and ``flow_y``, one
  grayscale JPEG each per frame: the two files of the frame-folder layout, values 0..255 as
  extracted (`keras_bert3d.data.flow`); the pipeline applies the preset's flow normalisation.

Shards are ``<prefix>-00003-of-00016.tfrecord`` beside ``<prefix>-manifest.json``; they are written by
`keras_bert3d.data.tfrecord_writer.write_tfrecords`.

Reading decodes in-graph: `read_tfrecords` yields dicts of decoded clips; with ``indices_fn``
only the frames a clip needs are decoded (sample indices first, then decode).
"""
import os

from keras_bert3d.validation import check_choice

FEATURE_LISTS = {"rgb": ("frames",), "flow": ("flow_x", "flow_y")}


def shard_name(prefix, shard, num_shards):
    """``<prefix>-00003-of-00016.tfrecord``: the file name of shard ``shard`` (0-based)."""
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def manifest_path(out_dir, prefix="train"):
    """``<out_dir>/<prefix>-manifest.json``: the record of the shards of ``prefix``."""
    return os.path.join(os.fspath(out_dir), f"{prefix}-manifest.json")


def list_shards(file_pattern):
    """The sorted shard files of a glob pattern, or of every ``*.tfrecord`` in a folder."""
    import tensorflow as tf

    pattern = os.fspath(file_pattern)
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*.tfrecord")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern}")
    return files


def shard_modality(files):
    """The modality stored in the first example of the first shard."""
    import tensorflow as tf

    for raw in tf.data.TFRecordDataset(files[:1]).take(1):
        example = tf.train.SequenceExample.FromString(raw.numpy())
        return example.context.feature["modality"].bytes_list.value[0].decode("utf-8")
    raise ValueError(f"{files[0]} holds no examples")


def parse_example(serialized, modality="rgb"):
    """Parses one serialized example (no JPEG decoding): a dict with ``label``, ``num_frames``
    (int32), ``class``, ``path`` (string), ``height``, ``width`` and the encoded feature lists
    (``frames``, or ``flow_x`` and ``flow_y``: string vectors)."""
    import tensorflow as tf

    check_choice("modality", modality, tuple(FEATURE_LISTS))
    context = {"label": tf.io.FixedLenFeature([], tf.int64), "class": tf.io.FixedLenFeature([], tf.string),
               "path": tf.io.FixedLenFeature([], tf.string), "num_frames": tf.io.FixedLenFeature([], tf.int64),
               "height": tf.io.FixedLenFeature([], tf.int64), "width": tf.io.FixedLenFeature([], tf.int64)}
    sequence = {name: tf.io.FixedLenSequenceFeature([], tf.string) for name in FEATURE_LISTS[modality]}
    ctx, lists = tf.io.parse_single_sequence_example(serialized, context_features=context,
                                                     sequence_features=sequence)
    example = {key: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value for key, value in ctx.items()}
    example.update(lists)
    return example


def decode_frames(example, indices=None, crop=None):
    """Decodes the frames of a parsed example in-graph.

    Args:
        example: a dict from `parse_example`.
        indices: int 0-based frame indices to decode (any order, repeats); None decodes all.
        crop: optional ``[y, x, height, width]`` window, decoded with ``tf.io.decode_and_crop_jpeg``
            (only the window's blocks are decoded), identical for every frame.

    Returns:
        uint8 ``(T, H, W, 3)`` for RGB, ``(T, H, W, 2)`` (x, y) for flow.
    """
    import tensorflow as tf

    names = [name for name in ("frames", "flow_x", "flow_y") if name in example]
    channels = 3 if names == ["frames"] else 1

    def decode(jpeg):
        # INTEGER_ACCURATE: the same pixels as the frame-folder source and Pillow/OpenCV.
        if crop is None:
            return tf.io.decode_jpeg(jpeg, channels=channels, dct_method="INTEGER_ACCURATE")
        return tf.io.decode_and_crop_jpeg(jpeg, tf.cast(crop, tf.int32), channels=channels,
                                          dct_method="INTEGER_ACCURATE")

    planes = []
    for name in names:
        jpegs = example[name] if indices is None else tf.gather(example[name], tf.cast(indices, tf.int32))
        planes.append(tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8)))
    return planes[0] if len(planes) == 1 else tf.concat(planes, axis=-1)


def read_tfrecords(file_pattern, indices_fn=None, decode=True, modality=None, shuffle_files=False, seed=None,
                   cycle_length=None, num_parallel_calls=None):
    """A `tf.data.Dataset` of the videos in TFRecord shards.

    Args:
        file_pattern: a glob (``out/train-*.tfrecord``) or a folder.
        indices_fn: optional ``fn(num_frames) -> int32 indices`` (TF ops, e.g. a clip sampler);
            only those frames are decoded, and the dict also holds ``indices``.
        decode: False leaves the JPEGs encoded (the `parse_example` dict), to sample and then
            `decode_frames` yourself.
        modality: "rgb" or "flow"; None reads it from the first example.
        shuffle_files: shuffle the shard order (``seed``), and read shards interleaved.
        cycle_length: shards read at once (default: min(files, 8)).
        num_parallel_calls: for parsing and decoding (default AUTOTUNE).

    Returns:
        A dataset of dicts: ``frames`` (uint8 ``(T, H, W, C)``, C = 3 or 2), ``label``,
        ``num_frames``, ``path``, ``class`` (and ``indices`` with ``indices_fn``).
    """
    import tensorflow as tf

    files = list_shards(file_pattern)
    modality = modality or shard_modality(files)
    calls = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length or min(len(files), 8),
                                 num_parallel_calls=calls, deterministic=not shuffle_files)
    dataset = dataset.map(lambda raw: parse_example(raw, modality), num_parallel_calls=calls)
    if not decode:
        return dataset

    def decoded(example):
        out = {key: example[key] for key in ("label", "num_frames", "path", "class")}
        if indices_fn is None:
            out["frames"] = decode_frames(example)
        else:
            out["indices"] = tf.cast(indices_fn(example["num_frames"]), tf.int32)
            out["frames"] = decode_frames(example, out["indices"])
        return out

    return dataset.map(decoded, num_parallel_calls=calls)
