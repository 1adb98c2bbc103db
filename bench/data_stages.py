"""The per-stage cost of a training clip (`bench_data.py --stages`): ms per clip, each stage alone.

For each source, on prepared inputs (a few clips sampled as training samples them, decoded once beforehand
for the later stages), the library's own functions, each traced once:
- decode: video, `read_frames` (PyAV, one thread) at the stored size; frames, read + JPEG decode of the clip's
  files (`_decode_frame_files` at the stored size); tfrecord, `parse_example` + `decode_frames` of the sampled
  frames, with the frame count unknown when traced, as the pipeline's indices come;
- resize: `transforms.resize` to ``frame_size`` (TFRecords hold frames at ``frame_size`` already);
- crop: `multi_scale_crop` (cut + resize to the crop size), a new seed each call;
- flip: `random_flip`, timed flipping every clip and halved (half the clips are flipped; a median over the
  draws would pick one of the two costs); normalise: `normalize` to float32;
- batch: stacking ``BATCH`` float32 clips, per clip.
"host" is decode + resize: what the host still does when the device crops, flips and normalises. The sum is
compared with the end-to-end pipeline (the round-robin measurement) on the same cores: the difference is
tf.data's own overhead and the stages' overlap. Run with ``--cores 1`` for per-core figures.
"""
import time

import numpy as np

STAGES = ("decode", "resize", "crop", "flip", "normalise", "batch")


def _timed(fn, inputs, seconds, min_calls=5):
    """Median ms per call of ``fn(*inputs[k])``, cycling over ``inputs``, after one warm-up call on each (the
    median: a shared machine's other jobs stall single calls)."""
    for args in inputs:
        fn(*args)
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        out = fn(*inputs[len(times) % len(inputs)])
        if hasattr(out, "numpy"):
            out.numpy()
        times.append(time.perf_counter() - begin)
    return 1000 * float(np.median(times))


def _samples(video_index, frames_index, tfrecords, clip_len, count):
    """``count`` training samples: (video path, frame folder, serialized TFRecord example, indices)."""
    import tensorflow as tf

    from keras_bert3d.data import sampling

    rng = np.random.default_rng(0)
    raws = [raw.numpy() for raw in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{tfrecords}/*.tfrecord")).take(count)]
    videos, folders, out = list(video_index), list(frames_index), []
    for k in range(count):
        video, folder = videos[k % len(videos)], folders[k % len(folders)]
        indices = sampling.train_indices(int(folder.num_frames), clip_len, rng).astype(np.int32)
        out.append((video.path, folder.path, raws[k % len(raws)], indices))
    return out


def _decoders(stored_size):
    """The decode stage per source: ``fn(sample) -> uint8 (T, H, W, 3)`` and its prepared-input maker."""
    import tensorflow as tf

    from keras_bert3d.data.frame_folders import frame_files
    from keras_bert3d.data.tfrecord import decode_frames, parse_example
    from keras_bert3d.data.video_reader import read_frames
    from keras_bert3d.data.video_sources import _decode_frame_files

    files_fn = tf.function(lambda files: _decode_frame_files(files, 3, list(stored_size)),
                           input_signature=[tf.TensorSpec([None, 1], tf.string)])
    record_fn = tf.function(lambda raw, indices: decode_frames(parse_example(raw), indices),
                            input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.int32)])

    def files_of(sample):
        names = [name.encode() for name in frame_files(sample[1], sample[3], "rgb")]
        return (tf.constant(np.asarray(names, dtype=object).reshape(-1, 1)),)

    return {"video": (lambda path, indices: read_frames(path, indices), lambda s: (s[0], s[3])),
            "frames": (files_fn, files_of),
            "tfrecord": (record_fn, lambda s: (tf.constant(s[2]), tf.constant(s[3])))}


def stage_costs(data, label, prep, batch, seconds, count=4):
    """ms per clip of each stage for each source of ``data`` (dict: codec, stored size, indexes, tfrecords)."""
    import tensorflow as tf

    from keras_bert3d.data import transforms

    clip_len, frame_size, crop = int(prep["num_frames"]), [int(v) for v in prep["frame_size"]], int(prep["crop_size"])
    stored = [data["size"][1], data["size"][0]]  # (height, width)
    samples = _samples(data["videos"], data["frames"], data["tfrecords"][label], clip_len, count)
    resize_fn = tf.function(lambda clip: transforms.resize(clip, frame_size),
                            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    crop_fn = tf.function(lambda clip, seed: transforms.multi_scale_crop(clip, crop, seed=seed),
                          input_signature=[tf.TensorSpec([None, *frame_size, 3], tf.uint8),
                                           tf.TensorSpec([2], tf.int64)])
    flip_fn = tf.function(lambda clip, seed: transforms.random_flip(clip, seed=seed, probability=1.0),
                          input_signature=[tf.TensorSpec([None, crop, crop, 3], tf.uint8), tf.TensorSpec([2], tf.int64)])
    norm_fn = tf.function(lambda clip: transforms.normalize(clip, prep),
                          input_signature=[tf.TensorSpec([None, crop, crop, 3], tf.uint8)])
    batch_fn = tf.function(lambda clip: tf.stack([clip] * batch),
                           input_signature=[tf.TensorSpec([None, crop, crop, 3], tf.float32)])
    seeds = [tf.constant([k, 0], tf.int64) for k in range(16)]
    rows = []
    for source, (decode, prepare) in _decoders(stored).items():
        inputs = [prepare(s) for s in samples]
        ms = {"decode": _timed(decode, inputs, seconds)}
        decoded = [tf.constant(decode(*args)) for args in inputs]
        ms["resize"] = _timed(resize_fn, [(clip,) for clip in decoded], seconds)
        resized = [resize_fn(clip) for clip in decoded]
        ms["crop"] = _timed(crop_fn, [(resized[k % len(resized)], seed) for k, seed in enumerate(seeds)], seconds)
        cropped = [crop_fn(resized[0], seed) for seed in seeds[:2]]
        ms["flip"] = _timed(flip_fn, [(cropped[k % 2], seed) for k, seed in enumerate(seeds)], seconds) / 2
        ms["normalise"] = _timed(norm_fn, [(clip,) for clip in cropped], seconds)
        ms["batch"] = _timed(batch_fn, [(norm_fn(cropped[0]),)], seconds) / batch
        rows.append({"input": label, "codec": data["codec"], "source": source, "ms": ms,
                     "sum_ms": sum(ms.values()), "host_ms": ms["decode"] + ms["resize"]})
    return rows


def stage_table(rows, pipeline_rows, cores):
    """Markdown: ms per clip per stage, the sum, the host-only (decode + resize) rate and the end-to-end rate."""
    measured = {(r["input"], r["codec"], r["source"]): r["clips_per_s"] for r in pipeline_rows
                if r["augment"] == "host"}
    head = " | ".join(STAGES)
    lines = [f"| input | data | source | {head} | sum | host only (decode+resize) | end-to-end on {cores} core(s), "
             "augment=host |",
             "|---|---|---|" + "---:|" * (len(STAGES) + 3)]
    for row in rows:
        rate = measured.get((row["input"], row["codec"], row["source"]))
        end = f"{1000 / rate:.1f} ms ({rate:.1f} clips/s)" if rate else "-"
        cells = " | ".join(f"{row['ms'][s]:.1f}" for s in STAGES)
        lines.append(f"| {row['input']} | {row['codec']} | {row['source']} | {cells} | {row['sum_ms']:.1f} "
                     f"({1000 / row['sum_ms']:.1f} clips/s) | {row['host_ms']:.1f} ms "
                     f"({1000 / row['host_ms']:.1f} clips/s) | {end} |")
    return "\n".join(lines)
