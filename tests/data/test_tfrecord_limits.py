"""`to-tfrecord` and protobuf's 2 GB message limit (issue 22): a video whose record would pass it is skipped as soon
as its JPEG frames pass `MAX_RECORD_BYTES` (the worker never holds more), named with the reason in the manifest's
``bad`` list, and the shard holds the other videos (before, the oversized record failed the shard on every rerun)."""
import numpy as np
import tensorflow as tf

from keras_bert3d.data import tfrecord_writer
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import write_video
from keras_bert3d.data.tfrecord_writer import write_tfrecords


def test_a_video_over_the_record_limit_is_skipped_counted_and_named(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    long_path, short_path = str(tmp_path / "long.avi"), str(tmp_path / "short.avi")
    write_video(long_path, rng.integers(0, 256, (90, 48, 64, 3), dtype=np.uint8), codec="mpeg4")
    write_video(short_path, rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8), codec="mpeg4")
    index = VideoIndex([VideoRecord(long_path, 0, "a"), VideoRecord(short_path, 1, "b")], ["a", "b"])
    one_frame = len(tfrecord_writer.encode_jpeg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 90))
    monkeypatch.setattr(tfrecord_writer, "MAX_RECORD_BYTES", 20 * one_frame)  # the short video fits, the long not
    manifest = write_tfrecords(index, tmp_path / "out", num_shards=1, workers=1, progress=False)
    [bad] = manifest["bad"]
    assert bad["path"] == long_path and "over protobuf's 2 GB record limit" in bad["reason"]
    frames_read = int(bad["reason"].split(" frames,")[0].split("after ")[-1])
    assert frames_read <= 25 < 90  # stopped at the limit, not after encoding the whole video
    [shard] = manifest["shards"].values()
    assert shard["videos"] == [short_path]
    records = list(tf.data.TFRecordDataset(str(tmp_path / "out" / next(iter(manifest["shards"])))))
    assert len(records) == 1
