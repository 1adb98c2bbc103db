"""Input dropped while reading in-graph is counted and named, like a bad video, never dropped silently.

Two places lose input inside TensorFlow's own readers, where no Python ``except`` runs:

- `read_shards`: a TFRecord shard that is cut short or corrupt mid-file. ``tf.data.TFRecordDataset`` stops at
  the damage (``DataLossError``); the records before it are read, and the shard's end is checked against its size.
  Short of it, the damaged record and those after it (walked by their length headers, `lost_records`) are counted
  in the `BadVideoCounter` as ``<shard>#record<k>``, each with the byte where the damage starts.
- `counted_map`: ``dataset.map(fn)`` where an element whose ``fn`` fails (a corrupt JPEG inside a TFRecord
  example or a frame folder, which ``tf.io.decode_jpeg`` refuses) is dropped and counted under its name.

Both run every time the dataset is iterated, so a damaged shard is counted in every epoch, like a bad video.
"""
import os
import struct

import tensorflow as tf

RECORD_OVERHEAD = 16  # a TFRecord's framing: 8-byte length, 4-byte length CRC, data, 4-byte data CRC


def lost_records(path, offset):
    """How many records of the shard at ``path`` start at or after byte ``offset`` (where reading stopped):
    the damaged one, and every later one whose length header still frames it (at least 1)."""
    size, count = os.path.getsize(path), 0
    with open(path, "rb") as f:
        while offset < size:
            count += 1
            f.seek(offset)
            header = f.read(8)
            if len(header) < 8:
                break
            offset += struct.unpack("<Q", header)[0] + RECORD_OVERHEAD
    return max(count, 1)


def _report_shard(counter):
    def report(path, size, read, records):
        path = path.decode("utf-8")
        if read < size:
            lost = lost_records(path, int(read))
            reason = (f"damaged TFRecord shard (corrupt or cut at byte {int(read)} of {int(size)}): "
                      f"{lost} record(s) from record {int(records)} on are lost")
            for k in range(int(records), int(records) + lost):
                counter.add(f"{path}#record{k}", reason)
        return False

    return report


def read_shards(files, counter, shuffle=False, seed=None, reshuffle=True, cycle_length=8):
    """The raw records of TFRecord ``files`` (interleaved, ``cycle_length`` at once; shard order shuffled with
    ``shuffle``), the records lost to a damaged shard counted in ``counter`` (a `BadVideoCounter`)."""
    sizes = [tf.io.gfile.stat(f).length for f in files]
    report = _report_shard(counter)
    shards = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
    if shuffle:
        shards = shards.shuffle(len(files), seed=seed, reshuffle_each_iteration=reshuffle)

    def shard_records(path, size):
        records = tf.data.TFRecordDataset(path).ignore_errors().map(lambda raw: (raw, False))
        end = tf.data.Dataset.from_tensors((tf.constant(b""), True))  # marks the shard's end: was it all read?

        def step(state, element):
            raw, last = element
            read, count = state
            framed = tf.cast(tf.strings.length(raw), tf.int64) + RECORD_OVERHEAD
            record = tf.cast(tf.logical_not(last), tf.int64)  # 0 for the end marker
            state = (read + framed * record, count + record)
            return state, (raw, last, state[0], state[1])

        def keep(raw, last, read, count):
            return tf.cond(last, lambda: tf.numpy_function(report, [path, size, read, count], tf.bool,
                                                           stateful=True), lambda: tf.constant(True))

        scanned = records.concatenate(end).scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
        return scanned.filter(lambda *element: tf.ensure_shape(keep(*element), [])).map(lambda raw, *_: raw)

    return shards.interleave(shard_records, cycle_length=min(len(files), cycle_length), deterministic=True,
                             num_parallel_calls=tf.data.AUTOTUNE)


def _empty_like(spec):
    return tf.zeros([0 if d is None else d for d in spec.shape], spec.dtype)


def counted_map(dataset, fn, name_fn, reason, counter, num_parallel_calls, deterministic):
    """``dataset.map(fn)`` for elements of tuples, where an element whose ``fn`` fails is dropped and counted
    in ``counter`` as ``name_fn(*element)`` (a string tensor) with ``reason``, in the input's order."""

    def one(*element):
        good = tf.data.Dataset.from_tensors(element).map(fn).map(lambda *out: (out, True, tf.constant(b"")))
        good = good.ignore_errors()  # this element alone: an error gives no element, then the stand-in below
        out_spec = good.element_spec[0]
        stand_in = (tf.nest.map_structure(_empty_like, out_spec), False, tf.cast(name_fn(*element), tf.string))
        return good.concatenate(tf.data.Dataset.from_tensors(stand_in)).take(1)

    def report(name):
        counter.add(name.decode("utf-8"), reason)
        return False

    def keep(out, ok, name):
        return tf.cond(ok, lambda: tf.constant(True),
                       lambda: tf.ensure_shape(tf.numpy_function(report, [name], tf.bool, stateful=True), []))

    cycle = max(os.cpu_count() or 1, num_parallel_calls)  # an interleave runs at most cycle_length calls at once
    mapped = dataset.interleave(one, cycle_length=cycle, block_length=1,
                                num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return mapped.filter(keep).map(lambda out, ok, name: out)
