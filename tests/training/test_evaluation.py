"""The test-protocol arithmetic (training/evaluation.py) and the view batching of training/streams.py,
against values computed by hand."""
import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.training import evaluation
from keras_bert3d.training.streams import predict_videos


def test_video_logits_average_raw_logits():
    views = [[1.0, 2.0, 3.0], [3.0, -2.0, 0.0]]
    np.testing.assert_allclose(evaluation.video_logits(views), [2.0, 0.0, 1.5])
    # raw logits, not probabilities: the softmax of the mean differs from the mean of the softmaxes
    softmax = np.exp(views) / np.exp(views).sum(axis=1, keepdims=True)
    assert not np.allclose(evaluation.video_logits(views), softmax.mean(axis=0))


def test_segment_mean_interleaved_views():
    logits = [[1, 0], [3, 2], [10, 10], [5, 4], [-2, 6]]
    ids = [0, 1, 2, 0, 1]
    expected = [[3.0, 2.0], [0.5, 4.0], [10.0, 10.0]]
    np.testing.assert_allclose(evaluation.segment_mean(logits, ids, 3), expected)
    with pytest.raises(ValueError, match="no views"):
        evaluation.segment_mean(logits, ids, 4)


def test_top_k_by_hand():
    logits = np.array([[0.1, 0.9, 0.0, 0.2, 0.3, 0.4],    # label 1: top-1 hit
                       [0.9, 0.1, 0.8, 0.7, 0.6, 0.5],    # label 1: 6th of 6: top-5 miss
                       [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],    # label 1: 5th: top-5 hit
                       [0.5, 0.5, 0.1, 0.1, 0.1, 0.1]])   # label 1: tie with 0, argmax takes 0: top-1 miss
    labels = np.array([1, 1, 1, 1])
    assert evaluation.top_k_accuracy(logits, labels, 1) == pytest.approx(1 / 4)
    assert evaluation.top_k_accuracy(logits, labels, 5) == pytest.approx(3 / 4)
    assert evaluation.top_k_accuracy(logits, labels, 6) == pytest.approx(1.0)
    assert evaluation.top_k_accuracy(logits[:, :3], labels, 5) == 1.0  # k clipped to classes


def test_mean_class_accuracy_imbalanced():
    # class 0: 8 videos, all right; class 1: 2 videos, both predicted 0; class 2: no test video
    labels = np.array([0] * 8 + [1] * 2)
    predictions = np.array([0] * 8 + [0, 0])
    logits = np.eye(3)[predictions]
    metrics = evaluation.compute_metrics(logits, labels)
    assert metrics["top1"] == pytest.approx(8 / 10)
    assert metrics["mean_class_accuracy"] == pytest.approx((1.0 + 0.0) / 2)   # class 2 left out, not 0
    assert metrics["videos"] == 10
    confusion = evaluation.confusion_matrix(labels, predictions, 3)
    np.testing.assert_array_equal(confusion, [[8, 0, 0], [2, 0, 0], [0, 0, 0]])
    accuracy = evaluation.per_class_accuracy(confusion)
    assert accuracy[0] == 1.0 and accuracy[1] == 0.0 and np.isnan(accuracy[2])


def test_two_stream_fusion_by_hand():
    rgb, flow = np.array([[3.0, 4.0]]), np.array([[0.0, -2.0]])
    np.testing.assert_allclose(evaluation.fuse_two_stream(rgb, flow), [[0.6, -0.2]])
    # the normalisation matters: raw sums pick class 0, the fused scores class 1
    rgb, flow = np.array([[10.0, 8.0]]), np.array([[0.0, 1.0]])
    assert (rgb + flow).argmax() == 0
    fused = evaluation.fuse_two_stream(rgb, flow)
    np.testing.assert_allclose(fused, [[10 / np.hypot(10, 8), 8 / np.hypot(10, 8) + 1.0]])
    assert fused.argmax() == 1
    with pytest.raises(ValueError, match="shape"):
        evaluation.fuse_two_stream(rgb, np.zeros((2, 2)))


def test_per_class_csv_and_confusion_png(tmp_path):
    logits = np.array([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    rows = evaluation.per_class_rows(logits, labels, ["a", "b", "c"])
    evaluation.write_per_class_csv(tmp_path / "per_class.csv", rows)
    with open(tmp_path / "per_class.csv", newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["class"] for r in read] == ["a", "b", "c"]
    assert [int(r["videos"]) for r in read] == [1, 2, 1]
    assert [float(r["accuracy"]) for r in read] == [1.0, 0.5, 1.0]
    assert float(read[0]["precision"]) == 0.5          # two videos predicted "a", one right
    assert read[1]["most_confused_with"] == "a" and read[0]["most_confused_with"] == ""
    confusion = evaluation.confusion_matrix(labels, logits.argmax(1), 3)
    evaluation.plot_confusion_matrix(confusion, ["a", "b", "c"], tmp_path / "confusion.png")
    data = (tmp_path / "confusion.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def _relu_model():
    """logits = relu(m * w + b), m the mean of the view: non-linear, so averaging inputs would differ."""
    inputs = keras.Input((2, 2, 2, 1))
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    dense = keras.layers.Dense(3, activation="relu")
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.array([[1.0, -1.0, 2.0]]), np.array([0.0, 0.0, -1.0])])
    return model


def _views(means):
    return np.stack([np.full((2, 2, 2, 1), m, np.float32) for m in means])


@pytest.mark.parametrize("view_batch", [1, 2, 10])
def test_predict_videos_by_hand(view_batch):
    videos = [(_views([1, -2, 3]), 2), (_views([5]), 0), (_views([0, 1, -1, 2]), 1)]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(videos), output_signature=(tf.TensorSpec([None, 2, 2, 2, 1], tf.float32),
                                                tf.TensorSpec([], tf.int32)))
    logits, labels, views = predict_videos(_relu_model(), dataset, view_batch, num_videos=3, progress=False)
    # relu(m*[1,-1,2]+[0,0,-1]) per view, averaged per video
    expected = [[4 / 3, 2 / 3, 2.0], [5.0, 0.0, 9.0], [3 / 4, 1 / 4, 1.0]]
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    np.testing.assert_array_equal(labels, [2, 0, 1])
    np.testing.assert_array_equal(views, [3, 1, 4])
    assert evaluation.compute_metrics(logits, labels)["top1"] == pytest.approx(1 / 3)
