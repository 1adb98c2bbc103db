"""TF Serving warmup file: written into assets.extra, parsed back into PredictRequests the SavedModel answers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.models.builder import build_model
from keras_bert3d.serving import warmup
from keras_bert3d.serving.export import export_saved_model
from keras_bert3d.serving.signatures import INPUT_KEY, NORMALIZED_SIGNATURE, SERVING_SIGNATURE
from models.tiny_presets import TINY_R2PLUS1D_BERT

TINY = TINY_R2PLUS1D_BERT


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """(model, export path with its default warmup file, loaded SavedModel)."""
    keras.utils.set_random_seed(1)
    model = build_model("rgb_r2plus1d_32f_34_bert10", 4, **TINY)
    path = export_saved_model(model, str(tmp_path_factory.mktemp("warm") / "tiny"))
    return model, path, tf.saved_model.load(path)


def test_default_warmup_file_parses_into_a_request_the_model_answers(export):
    model, path, loaded = export
    requests = warmup.read_warmup_requests(path)
    assert len(requests) == 1
    request = requests[0]
    assert request.model_spec.name == model.name and request.model_spec.signature_name == SERVING_SIGNATURE
    clips = warmup.request_inputs(request)[INPUT_KEY]
    prep = model.preprocessing
    assert clips.dtype == np.uint8 and clips.shape == (1, prep["num_frames"], *prep["frame_size"], 3)
    answer = warmup.answer_request(loaded, request)
    assert answer["probabilities"].shape == (1, 4)
    np.testing.assert_allclose(answer["probabilities"].sum(-1), 1.0, atol=1e-6)
    direct = loaded.signatures[SERVING_SIGNATURE](clips=tf.constant(clips))
    np.testing.assert_array_equal(answer["top_k_indices"], direct["top_k_indices"].numpy())
    # The clip is the deterministic one warmup_clips makes (what TF Serving replays is reproducible).
    np.testing.assert_array_equal(clips, warmup.warmup_clips(prep))


def test_several_signatures_and_batch_sizes(export, tmp_path):
    model, path, loaded = export
    written = warmup.write_warmup_requests(path, model.name, model.preprocessing,
                                           signatures=(SERVING_SIGNATURE, NORMALIZED_SIGNATURE), batch_sizes=(1, 2))
    assert written == warmup.warmup_path(path)
    assert sum(1 for _ in tf.data.TFRecordDataset(written)) == 4
    requests = warmup.read_warmup_requests(written)
    seen = [(r.model_spec.signature_name, warmup.request_inputs(r)[INPUT_KEY].shape[0]) for r in requests]
    assert seen == [(SERVING_SIGNATURE, 1), (SERVING_SIGNATURE, 2), (NORMALIZED_SIGNATURE, 1),
                    (NORMALIZED_SIGNATURE, 2)]
    for request in requests:
        clips = warmup.request_inputs(request)[INPUT_KEY]
        expected = np.uint8 if request.model_spec.signature_name == SERVING_SIGNATURE else np.float32
        assert clips.dtype == expected
        assert warmup.answer_request(loaded, request)["probabilities"].shape == (clips.shape[0], 4)


def test_make_request_sets_the_version():
    request = warmup.make_request("m", np.zeros((1, 2, 4, 4, 3), np.uint8), version=3)
    assert request.model_spec.version.value == 3 and request.model_spec.name == "m"
    assert warmup.request_inputs(request)[INPUT_KEY].shape == (1, 2, 4, 4, 3)


def test_errors_name_the_problem(export, tmp_path):
    model, path, loaded = export
    with pytest.raises(FileNotFoundError, match="not a SavedModel"):
        warmup.write_warmup_requests(str(tmp_path), model.name, model.preprocessing)
    with pytest.raises(FileNotFoundError, match="no warmup file"):
        warmup.read_warmup_requests(str(tmp_path))
    with pytest.raises(ValueError, match="`signature` must be"):
        warmup.warmup_clips(model.preprocessing, signature="classify")
    with pytest.raises(ValueError, match="positive batch size"):
        warmup.write_warmup_requests(path, model.name, model.preprocessing, batch_sizes=(0,))
    request = warmup.make_request(model.name, np.zeros((1, 8, 4, 4, 3), np.uint8), signature="nope")
    with pytest.raises(ValueError, match="no signature 'nope'"):
        warmup.answer_request(loaded, request)


def test_a_non_predict_record_is_refused(tmp_path):
    from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

    log = prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=classification_pb2.ClassificationRequest()))
    with tf.io.TFRecordWriter(str(tmp_path / "requests")) as writer:
        writer.write(log.SerializeToString())
    with pytest.raises(ValueError, match="classify_log, not a predict_log"):
        warmup.read_warmup_requests(str(tmp_path / "requests"))
