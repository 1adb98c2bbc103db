"""The demo's premise, checked on its own configs: on `DEMO` videos, temporal average pooling cannot see the
order of the events (each temporal token sees at most one event and never one next to a clip end), BERT
pooling can; and `training.demo` writes its dataset once."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data.synthetic import COLOURS, DEMO
from keras_bert3d.models.builder import build_model
from keras_bert3d.training import demo
from keras_bert3d.training.config_files import load_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "training", "configs")


def demo_model(pooling, num_classes=4):
    config = load_config(os.path.join(CONFIGS, f"synthetic_{pooling}.yaml"))["model"]
    return build_model(config["preset"], num_classes, **config["overrides"])


def test_configs_match_the_demo_videos():
    for pooling in demo.POOLINGS:
        prep = demo_model(pooling).preprocessing
        width, height = DEMO["size"]
        assert prep["num_frames"] == DEMO["num_frames"]  # the clip is the whole video
        assert list(prep["frame_size"]) == [height, width] and prep["crop_size"] == min(height, width)


def temporal_receptive_fields(backbone, num_frames, size):
    """For each output time step of ``backbone``: the input frames it depends on. Kernels are made positive
    and the input is all ones, so every activation is positive, every ReLU passes and no two paths cancel:
    a gradient is non-zero exactly on the frames that reach the token."""
    for weight in backbone.weights:
        if weight.path.endswith("kernel"):
            weight.assign(np.abs(keras.ops.convert_to_numpy(weight)))
    num_tokens = backbone.compute_output_shape((1, num_frames, size, size, 3))[1]
    clips = tf.ones((num_tokens, num_frames, size, size, 3))
    with tf.GradientTape() as tape:
        tape.watch(clips)
        features = backbone(clips, training=False)
        picked = tf.gather(features, tf.range(num_tokens), axis=1, batch_dims=1)  # token i of clip i
        loss = tf.reduce_sum(picked)
    reach = tf.reduce_sum(tape.gradient(loss, clips), axis=(2, 3, 4)).numpy()
    return [np.flatnonzero(row > 0) for row in reach]


def test_tokens_see_at_most_one_event_and_no_event_next_to_an_end():
    model = demo_model("tgap")
    fields = temporal_receptive_fields(model.get_layer("backbone"), DEMO["num_frames"], DEMO["size"][1])
    assert len(fields) == DEMO["num_frames"] // 8
    for frames in fields:
        assert np.array_equal(frames, np.arange(frames[0], frames[-1] + 1))  # contiguous
    full = max(len(frames) for frames in fields)
    assert full <= DEMO["min_gap"] + 1  # a window of `full` frames cannot hold parts of two events
    last = DEMO["num_frames"] - 1
    clipped = [frames for frames in fields if len(frames) < full]  # these see zero padding past an end
    assert clipped and all(frames[0] == 0 or frames[-1] == last for frames in clipped)
    for frames in clipped:  # ... and no event frame
        assert frames[-1] < DEMO["margin"] or frames[0] > last - DEMO["margin"]


def events_clip(order, starts, rng):
    """A normalised crop of a DEMO video: flat grey, the events of ``order`` at ``starts`` in one place."""
    size = min(DEMO["size"])
    side = int(size * DEMO["event_size"])
    frames = np.full((DEMO["num_frames"], size, size, 3), 100, np.float32)
    y, x = rng.integers(0, size - side + 1, size=2)
    for event, start in zip(order, starts):
        frames[start:start + DEMO["event_frames"], y:y + side, x:x + side] = COLOURS[event][1]
    return (frames / 255.0 - 0.45) / 0.225


@pytest.mark.parametrize("pooling, blind", [("tgap", True), ("bert", False)])
def test_reordering_the_events_changes_bert_logits_not_tgap_logits(pooling, blind):
    keras.utils.set_random_seed(3)
    model = demo_model(pooling)
    starts = (DEMO["margin"], DEMO["margin"] + 64, DEMO["margin"] + 128)  # 64 frames = 8 tokens apart
    assert starts[-1] + DEMO["event_frames"] + DEMO["margin"] <= DEMO["num_frames"]
    orders = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (1, 0, 2)]
    clips = np.stack([events_clip(order, starts, np.random.default_rng(1)) for order in orders])
    logits = keras.ops.convert_to_numpy(model(clips, training=False))
    spread = np.abs(logits - logits[0]).max()
    scale = np.abs(logits).max()
    assert scale > 1e-3
    if blind:
        assert spread <= 1e-5 * max(1.0, scale), spread
    else:
        assert spread > 1e-3 * scale, spread


def test_demo_writes_its_dataset_once(tmp_path, monkeypatch):
    from keras_bert3d.data import synthetic

    calls, write = [], synthetic.write_synthetic_dataset

    def counting(root, **kwargs):
        calls.append(kwargs)
        return write(root, **kwargs)

    monkeypatch.setattr(synthetic, "write_synthetic_dataset", counting)
    root = tmp_path / "synthetic"
    assert demo.make_dataset(str(root), videos_per_class=2, seed=0)
    assert not demo.make_dataset(str(root), videos_per_class=2, seed=0)
    assert len(calls) == 1 and calls[0]["num_frames"] == DEMO["num_frames"]
    (root / "Stale").mkdir()  # e.g. a class of an earlier version of the dataset
    assert demo.make_dataset(str(root), videos_per_class=3, seed=0)  # other settings: written again
    assert len(calls) == 2 and not (root / "Stale").exists()
    assert len(list(root.glob("*/*.mp4")) + list(root.glob("*/*.avi"))) == 4 * 3


def test_clear_runs_removes_only_the_demo_runs(tmp_path):
    for name in ("synthetic_bert", "synthetic_tgap", "mine"):
        (tmp_path / name / "backup").mkdir(parents=True)
    removed = demo.clear_runs(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == ["synthetic_bert", "synthetic_tgap"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_decoded_demo_videos_keep_the_guarantee(tmp_path):
    """Compression must not carry an event into the gaps (predicted frames would): outside its events a
    decoded demo video is grey (no colour at all), inside them it is clearly coloured."""
    import av

    from keras_bert3d.data.synthetic import write_synthetic_dataset

    info = write_synthetic_dataset(tmp_path, videos_per_class=2, **DEMO)
    assert info["min_gap"] == DEMO["min_gap"] and info["margin"] == DEMO["margin"]
    for video in info["videos"]:
        with av.open(str(tmp_path / video["path"])) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)
        assert len(frames) == DEMO["num_frames"]
        colour = np.abs(frames - frames.mean(axis=-1, keepdims=True)).mean(axis=(1, 2, 3))
        inside = np.zeros(len(frames), bool)
        for event in video["events"]:
            inside[event["start"]:event["start"] + DEMO["event_frames"]] = True
        assert colour[~inside].max() < 0.5, video["path"]
        assert colour[inside].min() > 10, video["path"]
