"""export_saved_model: every RGB preset exports, reloads (tf.saved_model.load, TFSMLayer) and predicts as the
Keras model does with the data pipeline's preprocessing; saved_model_cli reads and runs an export; bad
requests are refused with what was expected; ONNX and LiteRT files where they convert."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import transforms
from keras_bert3d.models.builder import build_model, get_preset, list_models
from keras_bert3d.serving import export as ex
from keras_bert3d.serving import export_formats as formats
from keras_bert3d.serving import model_files
from keras_bert3d.serving import signatures as sig
from models.tiny_presets import TINY_R2PLUS1D_BERT, tiny_overrides

RGB_PRESETS = [n for n in list_models() if get_preset(n)["preprocessing"]["modality"] == "rgb"]
TINY_R2PLUS1D = TINY_R2PLUS1D_BERT
CLASS_NAMES = ["archery", "bowling", "cliff diving", "drumming", "fencing"]
TOLERANCE = 1e-5
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def uint8_clips(model, batch, height, width, seed=0):
    prep = model.preprocessing
    shape = (batch, prep["num_frames"], height, width, len(prep["mean"]))
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def keras_reference(model, clips):
    """Normalised clips and softmax probabilities of the Keras model, each clip preprocessed alone as the
    data pipeline's val mode does (transforms.resize, center_crop, normalize)."""
    prep = model.preprocessing
    x = np.stack([transforms.normalize(transforms.center_crop(transforms.resize(clip, prep["frame_size"]),
                                                              prep["crop_size"]), prep).numpy() for clip in clips])
    logits = np.asarray(model(x, training=False))
    return x, logits, np.asarray(keras.ops.softmax(logits))


def assert_matches(outputs, logits, probabilities, class_names):
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    assert set(outputs) == set(sig.OUTPUT_KEYS)
    # Random-initialised TGAP models reach logits of |100|+ (raw-pixel ResNeXt inputs): 1e-5 relative there,
    # and the probabilities move with the logits (by up to half a logit's change), so the same scale.
    scale = max(1.0, np.abs(logits).max())
    np.testing.assert_allclose(outputs["logits"], logits, rtol=0, atol=TOLERANCE * scale)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, rtol=0, atol=TOLERANCE * scale)
    k = min(sig.TOP_K, probabilities.shape[-1])
    assert outputs["top_k_indices"].shape == (len(logits), k) and outputs["top_k_indices"].dtype == np.int32
    np.testing.assert_allclose(outputs["top_k_scores"], -np.sort(-probabilities)[:, :k], atol=TOLERANCE * scale)
    np.testing.assert_allclose(np.take_along_axis(probabilities, outputs["top_k_indices"], 1),
                               outputs["top_k_scores"], atol=TOLERANCE * scale)
    names = np.array(class_names, dtype=object)[outputs["top_k_indices"]]
    assert [[c.decode() for c in row] for row in outputs["top_k_classes"]] == names.tolist()


def check_export(model, path, clips, class_names, tfsm=True, normalized=True, loaded=None):
    """Both reloads of ``path`` answer ``clips`` as the Keras model does: ``serving_default`` through
    tf.saved_model.load's signatures (TF Serving's path) and through TFSMLayer, ``predict_normalized``
    through the signatures. Returns the loaded object."""
    x, logits, probabilities = keras_reference(model, clips)
    loaded = tf.saved_model.load(path) if loaded is None else loaded
    assert_matches(loaded.signatures[sig.SERVING_SIGNATURE](clips=tf.constant(clips)), logits, probabilities,
                   class_names)
    if normalized:
        assert_matches(loaded.signatures[sig.NORMALIZED_SIGNATURE](clips=tf.constant(x)), logits, probabilities,
                       class_names)
    if tfsm:
        layer = keras.layers.TFSMLayer(path, call_endpoint=sig.SERVING_SIGNATURE)
        assert_matches(layer(clips), logits, probabilities, class_names)
    return loaded


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny R(2+1)D BERT model and its export (with the warmup file): (model, path)."""
    keras.utils.set_random_seed(0)
    model = build_model("rgb_r2plus1d_32f_34_bert10", len(CLASS_NAMES), **TINY_R2PLUS1D)
    root = tmp_path_factory.mktemp("exports") / model.name
    return model, ex.export_saved_model(model, str(root), class_names=CLASS_NAMES)


@pytest.fixture(scope="module")
def tiny_loaded(tiny):
    return tf.saved_model.load(tiny[1])


@pytest.mark.full
@pytest.mark.parametrize("name", RGB_PRESETS)
def test_every_rgb_preset_exports_reloads_and_predicts(name, tmp_path):
    model = build_model(name, 6, **tiny_overrides(name))
    path = ex.export_saved_model(model, str(tmp_path / name), warmup=False)
    assert path == str(tmp_path / name / "1")
    # predict_normalized calls the same stored forward function: checked on `tiny` and at full size (slow).
    check_export(model, path, uint8_clips(model, 2, 45, 61), model_files.default_class_names(6), normalized=False)


def test_flow_preset_takes_two_channels(tmp_path):
    model = build_model("flow_resneXt3D64f101", 3, **tiny_overrides("flow_resneXt3D64f101"))
    path = ex.export_saved_model(model, str(tmp_path / "flow"), warmup=False)
    loaded = check_export(model, path, uint8_clips(model, 1, 40, 52), model_files.default_class_names(3), tfsm=False)
    spec = loaded.signatures[sig.SERVING_SIGNATURE].structured_input_signature[1][sig.INPUT_KEY]
    assert spec.shape.as_list() == [None, model.preprocessing["num_frames"], None, None, 2]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"height, width, 2\); received shape"):
        loaded.signatures[sig.SERVING_SIGNATURE](clips=tf.zeros([1, model.preprocessing["num_frames"], 40, 52, 3],
                                                               tf.uint8))


@pytest.mark.full_export
@pytest.mark.parametrize("name", RGB_PRESETS)
def test_full_size_preset_exports_and_predicts(name, tmp_path):
    model = build_model(name, 10)
    path = ex.export_saved_model(model, str(tmp_path / name), warmup=False)
    check_export(model, path, uint8_clips(model, 1, 240, 320), model_files.default_class_names(10))


def test_layout_metadata_and_class_names(tiny, tiny_loaded):
    model, path = tiny
    assert os.path.basename(path) == "1"
    for name in ("saved_model.pb", "variables", "assets/preprocessing.json",
                 "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(path, name)), name
    assert not [d for d in os.listdir(os.path.dirname(path)) if d.startswith(".")]  # no staging folder left
    meta = sig.read_metadata(path)
    assert meta["preprocessing"] == json.loads(json.dumps(model.preprocessing))
    assert meta["class_names"] == CLASS_NAMES and meta["model"] == model.name and meta["version"] == 1
    assert [c.decode() for c in tiny_loaded.class_names[0].numpy()] == CLASS_NAMES
    assert json.loads(tiny_loaded.metadata_json[0].numpy()) == meta


def test_signatures_shapes_and_outputs(tiny, tiny_loaded):
    model, loaded = tiny[0], tiny_loaded
    assert {sig.SERVING_SIGNATURE, sig.NORMALIZED_SIGNATURE} <= set(loaded.signatures)
    prep = model.preprocessing
    frames, size = prep["num_frames"], prep["crop_size"]
    expected = {sig.SERVING_SIGNATURE: ([None, frames, None, None, 3], tf.uint8),
                sig.NORMALIZED_SIGNATURE: ([None, frames, size, size, 3], tf.float32)}
    for name, (shape, dtype) in expected.items():
        signature = loaded.signatures[name]
        spec = signature.structured_input_signature[1][sig.INPUT_KEY]
        assert (spec.shape.as_list(), spec.dtype) == (shape, dtype)
        outputs = signature.structured_outputs
        assert {k: v.dtype for k, v in outputs.items()} == {
            "logits": tf.float32, "probabilities": tf.float32, "top_k_indices": tf.int32,
            "top_k_scores": tf.float32, "top_k_classes": tf.string}


def test_matches_keras_on_a_batch_of_odd_frame_sizes(tiny, tiny_loaded):
    model, path = tiny
    check_export(model, path, uint8_clips(model, 3, 37, 93, seed=4), CLASS_NAMES, loaded=tiny_loaded)


def test_preprocessing_rule_resize_then_round_half_even_centre_crop():
    # Frames already at frame_size: resizing is the identity, so the crop window is visible. (37 - 32) / 2
    # = 2.5 and (41 - 32) / 2 = 4.5 round half to even: y = 2, x = 4.
    prep = {"modality": "rgb", "num_frames": 2, "frame_size": [37, 41], "crop_size": 32, "scale": 1 / 255,
            "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 2.0]}
    clips = np.random.default_rng(1).integers(0, 256, (2, 2, 37, 41, 3), dtype=np.uint8)
    got = ex.preprocess_clips(tf.constant(clips), prep).numpy()
    window = clips[:, :, 2:34, 4:36].astype(np.float32)
    np.testing.assert_allclose(got, (window / 255 - np.array(prep["mean"])) / np.array(prep["std"]), atol=1e-6)
    # Any other size is resized to frame_size first (bilinear, rounded to uint8), whatever its aspect ratio.
    small = np.random.default_rng(2).integers(0, 256, (1, 2, 20, 60, 3), dtype=np.uint8)
    resized = tf.cast(tf.round(tf.image.resize(small[0], [37, 41])), tf.uint8).numpy()[None]
    np.testing.assert_allclose(ex.preprocess_clips(tf.constant(small), prep).numpy(),
                               ex.preprocess_clips(tf.constant(resized), prep).numpy(), atol=1e-6)


@pytest.mark.full
def test_saved_model_cli_show_and_run(tiny, tmp_path):
    model, path = tiny
    clips = uint8_clips(model, 1, 50, 66, seed=7)
    np.save(tmp_path / "clips.npy", clips)
    commands = {"show": [SAVED_MODEL_CLI, "show", "--dir", path, "--all"],
                "run": [SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
                        sig.SERVING_SIGNATURE, "--inputs", f"clips={tmp_path / 'clips.npy'}",
                        "--outdir", str(tmp_path / "out")]}
    running = {k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for k, c in commands.items()}  # both at once: each spends seconds importing TensorFlow
    done = {k: p.communicate(timeout=180) + (p.returncode,) for k, p in running.items()}
    for key, (_, err, code) in done.items():
        assert code == 0, f"saved_model_cli {key}: {err[-2000:]}"
    shown, frames = done["show"][0], model.preprocessing["num_frames"]
    for text in ("signature_def['serving_default']", "signature_def['predict_normalized']", "DT_UINT8",
                 f"shape: (-1, {frames}, -1, -1, 3)", f"shape: (-1, {frames}, 32, 32, 3)", "top_k_classes",
                 "DT_STRING"):
        assert text in shown, text
    _, logits, probabilities = keras_reference(model, clips)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probabilities.npy"), probabilities, atol=TOLERANCE)
    top = np.load(tmp_path / "out" / "top_k_indices.npy")
    assert top.tolist() == np.argsort(-probabilities, axis=1)[:, :5].tolist()


EXPECTED_UINT8 = r"\(batch, 8, height, width, 3\); received shape\] "


@pytest.mark.parametrize("signature,shape,dtype,pattern", [
    (sig.SERVING_SIGNATURE, (1, 4, 40, 50, 3), tf.uint8, EXPECTED_UINT8 + r"\[1 4 40 50 3\]"),   # frames
    (sig.SERVING_SIGNATURE, (8, 40, 50, 3), tf.uint8, EXPECTED_UINT8 + r"\[8 40 50 3\]"),         # no batch axis
    (sig.SERVING_SIGNATURE, (1, 8, 40, 50, 4), tf.uint8, r"uint8 and shape \(batch, 8, height, width, 3\)"),
    (sig.SERVING_SIGNATURE, (1, 8, 0, 50, 3), tf.uint8, r"received shape\] \[1 8 0 50 3\]"),
    (sig.NORMALIZED_SIGNATURE, (1, 8, 33, 32, 3), tf.float32, r"float32 and shape \(batch, 8, 32, 32, 3\)"),
    (sig.NORMALIZED_SIGNATURE, (2, 8, 32, 32), tf.float32, r"received shape\] \[2 8 32 32\]"),
])
def test_bad_requests_say_what_was_expected(tiny_loaded, signature, shape, dtype, pattern):
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{signature} expects `clips` of dtype") as err:
        tiny_loaded.signatures[signature](clips=tf.zeros(shape, dtype))
    assert err.match(pattern)


def test_wrong_dtype_is_refused_naming_the_expected_one(tiny, tiny_loaded):
    path = tiny[1]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor but is a float"):
        tiny_loaded.signatures[sig.SERVING_SIGNATURE](clips=tf.zeros([1, 8, 40, 50, 3], tf.float32))
    layer = keras.layers.TFSMLayer(path, call_endpoint=sig.SERVING_SIGNATURE)
    with pytest.raises((TypeError, ValueError), match=r"shape=\(None, 8, None, None, 3\), dtype=tf.uint8"):
        layer(np.zeros([1, 8, 40, 50, 3], np.float32))


def test_versions_and_argument_errors(tiny, tmp_path):
    model, path = tiny
    base = os.path.dirname(path)
    assert model_files.next_version(base) == 2 and model_files.next_version(str(tmp_path / "none")) == 1
    with pytest.raises(ValueError, match="exists"):
        ex.export_saved_model(model, base, version=1)
    for kwargs, pattern in [({"version": 0}, "version"), ({"class_names": ["a"]}, "5 classes but 1 class names"),
                            ({"top_k": 0}, "top_k"), ({"preprocessing": {"num_frames": 8}}, "lacks")]:
        with pytest.raises(ValueError, match=pattern):
            ex.export_saved_model(model, base, **kwargs)
    assert model_files.next_version(base) == 2  # nothing was written


def _tiny_functional(layer, channels=3, frames=4, size=8):
    inputs = keras.Input((frames, size, size, channels))
    x = keras.layers.GlobalAveragePooling3D()(layer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x), name="toy")
    prep = {"modality": "rgb", "num_frames": frames, "frame_size": [size, size + 2], "crop_size": size,
            "scale": 1.0, "mean": [0.0] * channels, "std": [1.0] * channels}
    return model, prep


def test_onnx_matches_keras_for_r2plus1d(tiny, tmp_path):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    model, _ = tiny
    x, logits, _ = keras_reference(model, uint8_clips(model, 2, 40, 40))
    path = formats.export_onnx(model, str(tmp_path / "tiny.onnx"), batch_size=None)  # any batch: 2 clips here
    session = ort.InferenceSession(path)
    got = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, logits, atol=TOLERANCE)


def test_onnx_lstm_head_converts_with_a_fixed_batch(tmp_path):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    name = "rgb_resneXt3D64f101_FRMB_lstm"
    model = build_model(name, 3, **tiny_overrides(name))
    with pytest.raises(ValueError, match=r"(?s)invalid model: .*MatMul.*\(try batch_size=1\)"):
        formats.export_onnx(model, str(tmp_path / "any.onnx"), batch_size=None)
    assert not os.path.exists(tmp_path / "any.onnx")
    session = ort.InferenceSession(formats.export_onnx(model, str(tmp_path / "one.onnx")))
    x = np.random.default_rng(3).standard_normal((1, *model.input.shape[1:])).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0],
                               np.asarray(model(x, training=False)), atol=TOLERANCE)


def test_onnx_refuses_grouped_conv3d(tmp_path):
    pytest.importorskip("tf2onnx")
    model, _ = _tiny_functional(keras.layers.Conv3D(4, 3, groups=2, padding="same"), channels=4)
    with pytest.raises(ValueError, match="StatefulPartitionedCall"):
        formats.export_onnx(model, str(tmp_path / "grouped.onnx"))
    assert not os.path.exists(tmp_path / "grouped.onnx")


def test_litert_matches_the_saved_model(tiny, tmp_path):
    model, path = tiny
    tflite = formats.export_litert(path, str(tmp_path / "tiny.tflite"))
    x, logits, probabilities = keras_reference(model, uint8_clips(model, 1, 40, 40))
    got = formats.run_litert(tflite, x.astype(np.float32))
    np.testing.assert_allclose(got["probabilities"], probabilities, atol=TOLERANCE)
    np.testing.assert_allclose(got["logits"], logits, atol=TOLERANCE)
    assert "top_k_classes" not in got and got["top_k_indices"].tolist() == np.argsort(-probabilities)[:, :5].tolist()


def test_litert_names_the_ops_it_lacks(tmp_path):
    model, prep = _tiny_functional(keras.layers.MaxPooling3D(2))
    path = ex.export_saved_model(model, str(tmp_path / "toy"), preprocessing=prep, warmup=False)
    with pytest.raises(ValueError, match="no builtin for MaxPool3D; pass select_tf_ops=True"):
        formats.export_litert(path, str(tmp_path / "toy.tflite"))
    assert os.path.getsize(formats.export_litert(path, str(tmp_path / "toy.tflite"), select_tf_ops=True)) > 0


def test_bert3d_export_command_and_training_script(tiny, tmp_path, monkeypatch, capsys):
    import argparse

    from keras_bert3d.cli import export as cli

    model, _ = tiny
    model.save(tmp_path / "tiny.keras")
    (tmp_path / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    monkeypatch.chdir(tmp_path)
    cli.run(parser.parse_args(["tiny.keras", "--class-names", "classes.txt", "--models-config", "--no-warmup",
                               "--litert", "tiny.tflite"]))
    assert (tmp_path / "tiny.tflite").stat().st_size > 0
    first = tmp_path / "saved_models" / model.name / "1"  # the default: saved_models/<name>/<next version>
    assert (first / "saved_model.pb").is_file() and not (first / "assets.extra").exists()
    assert sig.read_metadata(str(first))["class_names"] == CLASS_NAMES
    assert f'name: "{model.name}"' in (tmp_path / "saved_models" / "models.config").read_text()
    printed = capsys.readouterr().out
    assert f"wrote saved_models/{model.name}/1" in printed and "docker run" in printed
    assert "(batch, 8, height, width, 3)" in printed and "wrote tiny.tflite" in printed
    with pytest.raises(ValueError, match="exists"):
        cli.run(parser.parse_args(["tiny.keras", "--version", "1"]))
    with pytest.raises(FileNotFoundError, match="no model file"):
        cli.run(parser.parse_args(["missing.keras"]))

    # `bert3d export` (which `python -m training.export` drives) over the same file.
    from keras_bert3d.cli import main as bert3d

    assert bert3d(["export", "tiny.keras", "--output", "out/tiny", "--version", "7"]) == 0
    assert (tmp_path / "out" / "tiny" / "7" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert bert3d(["export", "tiny.keras", "--output", "out/tiny", "--version", "7"]) == 2
    assert "7 exists" in capsys.readouterr().err
