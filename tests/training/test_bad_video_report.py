"""BadVideoReport: the videos the pipeline skipped during each epoch of model.fit, per reason."""
import keras
import numpy as np
import pytest

from keras_bert3d.data.bad_videos import BadVideoCounter
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import write_video
from keras_bert3d.training.bad_video_report import BadVideoReport

PREP = {"modality": "rgb", "num_frames": 8, "frame_size": [24, 32], "crop_size": 16,
        "scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}


def test_report_callback_during_fit(tmp_path, capsys):
    records = []
    for k, n in enumerate((20, 9)):
        path = str(tmp_path / f"good{k}.mp4")
        write_video(path, np.full((n, 48, 64, 3), 8 + 6 * k, np.uint8))
        records.append(VideoRecord(path, k, f"c{k}"))
    records.insert(1, VideoRecord(str(tmp_path / "missing.mp4"), 0, "c0"))
    dataset, bad_videos = make_dataset(VideoIndex(records, ["c0", "c1"]), PREP, "train", batch_size=2, seed=0)
    inputs = keras.Input((8, 16, 16, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling3D()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = BadVideoReport(bad_videos)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[report])
    assert report.history == [{"missing": 1}, {"missing": 1}]
    assert "Epoch 2: 1 bad video skipped (missing: 1)" in capsys.readouterr().out


def test_argument_errors():
    with pytest.raises(ValueError, match="counter="):
        BadVideoReport(counter={})
    with pytest.raises(ValueError, match="verbose=2"):
        BadVideoReport(BadVideoCounter(), verbose=2)
