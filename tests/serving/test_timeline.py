"""The timeline of a long or untrimmed video: `bert3d predict VIDEO --model M --timeline [PNG] --json` and
`predict_timeline` on a two-action video, with a tiny BERT model whose head is fitted (closed form, on features
the real model computes from real decoded windows) so that the colour of the action decides its class; the same
answers through REST and gRPC (the stand-in servers of test_clients); short videos looped; memory flat in the
video's length; a video broken mid-stream ends its timeline at the damage."""
import json

import keras
import numpy as np
import pytest

from keras_bert3d.cli import main
from keras_bert3d.data.synthetic import write_video
from keras_bert3d.data.video_reader import stream_frames
from keras_bert3d.models.builder import build_model
from keras_bert3d.serving.grpc_client import GrpcClient
from keras_bert3d.serving.local_clients import KerasClient
from keras_bert3d.serving.rest_client import RestClient
from keras_bert3d.serving.video_client import VideoClient
from keras_bert3d.serving.timeline import (expected_windows, parse_stride, predict_timeline, sliding_windows)
from models.tiny_presets import TINY_R2PLUS1D_BERT

TINY = dict(TINY_R2PLUS1D_BERT, num_frames=16)
CLASSES = ["red ball", "blue ball", "nothing"]
COLOURS = {"red ball": (230, 40, 40), "blue ball": (40, 80, 240)}
FPS, ACTION = 25, 64  # frames per action in the two-action video


def action_frames(colour, num_frames, seed, height=48, width=64):
    """A large square of ``colour`` moving over a noisy grey background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(80, 121, (num_frames, height, width, 3), dtype=np.uint8)
    side = height * 3 // 4
    for t in range(num_frames):
        x = int((width - side) * (0.5 + 0.5 * np.sin(t / 5 + seed)))
        y = int((height - side) * (0.5 + 0.5 * np.cos(t / 7 + seed)))
        frames[t, y:y + side, x:x + side] = colour
    return frames


def two_actions(path, seed=7):
    """One action after the other: ACTION frames of the red ball, then ACTION frames of the blue one."""
    frames = np.concatenate([action_frames(COLOURS["red ball"], ACTION, seed),
                             action_frames(COLOURS["blue ball"], ACTION, seed + 1)])
    write_video(path, frames, fps=FPS)
    return path


def rig_head(model, root):
    """Sets the classifier so that colour decides: the mean features (the classifier's input, computed by the real
    model on decoded and preprocessed windows of one video per action) define a linear rule with logits +-5."""
    client = KerasClient(model)
    features = keras.Model(model.input, model.get_layer("classifier").input)
    means = {}
    for k, (name, colour) in enumerate(COLOURS.items()):
        path = str(root / f"train_{k}.mp4")  # three short takes of the action, one after the other
        write_video(path, np.concatenate([action_frames(colour, 32, seed=10 * k + j) for j in range(3)]), fps=FPS)
        clips = np.stack([clip for _, clip in sliding_windows(stream_frames(path), 16, 8, FPS, [])])
        means[name] = np.asarray(features(client.preprocess(clips), training=False)).mean(axis=0)
    red, blue = means["red ball"], means["blue ball"]
    direction = (red - blue) * 10.0 / float(np.sum((red - blue) ** 2))
    offset = float(direction @ (red + blue) / 2)
    kernel = np.stack([direction, -direction, np.zeros_like(direction)], axis=1)
    model.get_layer("classifier").set_weights([kernel.astype(np.float32), np.array([-offset, offset, 0], np.float32)])


@pytest.fixture(scope="module")
def rigged(tmp_path_factory):
    root = tmp_path_factory.mktemp("timeline")
    keras.utils.set_random_seed(3)
    model = build_model("rgb_r2plus1d_32f_34_bert10", len(CLASSES), **TINY)
    rig_head(model, root)
    path = root / "rigged.keras"
    model.save(path)
    with open(root / "class_names.json", "w") as f:  # found beside the model, as a training run writes it
        json.dump(CLASSES, f)
    return model, str(path), str(two_actions(root / "two_actions.mp4"))


def winners(result):
    return [(w["start_frame"], w["end_frame"], w["top"][0]["class"]) for w in result["windows"]]


def test_cli_timeline_puts_each_action_on_top_where_it_happens(rigged, tmp_path, capsys):
    _, model_path, video = rigged
    png = tmp_path / "timeline.png"
    assert main(["predict", video, "--model", model_path, "--timeline", str(png), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clip_frames"] == 16 and result["stride_frames"] == 8 and result["num_frames"] == 2 * ACTION
    starts = [w["start_frame"] for w in result["windows"]]
    assert starts == list(range(0, 2 * ACTION - 16 + 1, 8))
    for window in result["windows"]:
        assert window["start_s"] == pytest.approx(window["start_frame"] / FPS, abs=1e-3)
        assert window["end_s"] == pytest.approx((window["end_frame"] + 1) / FPS, abs=1e-3)
        assert len(window["top"]) == 3 and window["top"][0]["probability"] >= window["top"][1]["probability"]
    inside = [(s, e, c) for s, e, c in winners(result) if e < ACTION or s >= ACTION]
    assert len(inside) == len(result["windows"]) - 1  # one window straddles the change
    for start, end, top in inside:
        assert top == ("red ball" if end < ACTION else "blue ball"), (start, end)
    assert {t["class"] for t in result["video_top"]} == set(CLASSES)
    assert result["png"] == str(png) and png.stat().st_size > 10_000
    import matplotlib.image

    assert matplotlib.image.imread(str(png)).shape[:2] == (540, 1000)  # probabilities + the CLS attention strip


def test_python_entry_keeps_attention_and_text_output(rigged, tmp_path, capsys):
    model, model_path, video = rigged
    timeline = predict_timeline(video, model, stride="0.64s", class_names=CLASSES)
    assert timeline.stride == 16 and [w.start_frame for w in timeline.windows] == list(range(0, 2 * ACTION - 15, 16))
    assert timeline.attention.shape == (len(timeline.windows), 2)  # 16 frames -> 2 temporal tokens
    assert np.all(timeline.attention > 0) and np.all(timeline.attention.sum(axis=1) <= 1 + 1e-5)
    np.testing.assert_allclose(timeline.probabilities.sum(axis=1), 1, atol=1e-5)
    assert main(["predict", video, "--model", model_path, "--timeline", "--stride", "32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "5 windows of 16 frames every 32" in out and out.count(" s  ") == 5  # 0, 32, 64, 96 and the tail, 112
    assert out.splitlines()[1].split()[4:6] == ["red", "ball"] and out.splitlines()[5].split()[4:6] == ["blue", "ball"]
    by_probability = predict_timeline(video, model, stride=32, method="probabilities", class_names=CLASSES)
    top2 = by_probability.top(by_probability.video_probabilities, 2)
    assert {t["class"] for t in top2} == {"red ball", "blue ball"}  # half the video each
    np.testing.assert_allclose(by_probability.video_probabilities, by_probability.probabilities.mean(axis=0),
                               atol=1e-6)


def test_a_short_video_is_looped_and_said_so(rigged, tmp_path, capsys):
    _, model_path, _ = rigged
    video = tmp_path / "short.mp4"
    write_video(video, action_frames(COLOURS["blue ball"], 6, 3), fps=FPS)
    assert main(["predict", str(video), "--model", model_path, "--timeline", "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert len(result["windows"]) == 1 and result["windows"][0]["looped"] is True
    assert result["windows"][0]["end_frame"] == 5 and result["windows"][0]["end_s"] == pytest.approx(6 / FPS)
    assert "fewer than a clip (16): one window of its frames looped" in result["notes"][0]
    assert result["windows"][0]["top"][0]["class"] == "blue ball"


def test_windows_strides_and_the_tail():
    assert parse_stride(None, 16, 25) == 8 and parse_stride("5", 16, 25) == 5 and parse_stride("2s", 16, 29.97) == 60
    for bad in ("0", "-1s", "fast", "0s"):
        with pytest.raises(ValueError, match="stride"):
            parse_stride(bad, 16, 25)
    frames = [type("F", (), {"index": i, "time_s": i / 10, "pixels": np.full((2, 2, 3), i, np.uint8)})
              for i in range(23)]
    notes = []
    windows = list(sliding_windows(iter(frames), 8, 6, 10, notes))
    assert [w.start_frame for w, _ in windows] == [0, 6, 12, 15] and len(windows) == expected_windows(23, 8, 6)
    assert [int(clip[0, 0, 0, 0]) for _, clip in windows] == [0, 6, 12, 15] and "last window" in notes[0]
    assert windows[-1][0].end_s == pytest.approx(2.3)


def test_served_models_give_the_same_timeline(rigged, tmp_path):
    from test_clients import ServingStandIn  # the TF Serving stand-in (REST transport and gRPC stub)

    from keras_bert3d.serving.export import export_saved_model

    model, _, video = rigged
    export = export_saved_model(model, str(tmp_path / "rigged"), class_names=CLASSES, version=1, warmup=False)
    stand_in = ServingStandIn(export, name="rigged")
    local = predict_timeline(video, model, stride=16, class_names=CLASSES)
    rest = predict_timeline(video, RestClient("http://localhost:8501", "rigged", transport=stand_in.transport),
                            stride=16)
    grpc = predict_timeline(video, GrpcClient("localhost:8500", "rigged", stub=stand_in), stride=16)
    for served in (rest, grpc):
        assert served.windows == local.windows and served.attention is None
        np.testing.assert_allclose(served.probabilities, local.probabilities, atol=2e-4)
        assert [row["top"][0]["class"] for row in served.to_dict()["windows"]] == \
               [row["top"][0]["class"] for row in local.to_dict()["windows"]]
    assert rest.class_names[:2] == ["red ball", "blue ball"]  # learned from the responses


def test_memory_stays_flat_in_the_videos_length(tmp_path):
    """Peak traced memory (tracemalloc: numpy buffers included) of a timeline over 1500 frames (18 MB of
    pixels) against one over 150."""
    import tracemalloc

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (150, 64, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "short.mp4", base, gop_size=50)
    write_video(tmp_path / "long.mp4", np.concatenate([base] * 10), gop_size=50)
    peaks = {}
    for name in ("short", "long"):
        tracemalloc.start()
        try:
            timeline = predict_timeline(tmp_path / f"{name}.mp4", MeanColour(16), batch_size=4)
            peaks[name] = (len(timeline.windows), tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks["short"][0] == expected_windows(150, 16, 8) == 18
    assert peaks["long"][0] == expected_windows(1500, 16, 8) == 187
    frame = 64 * 64 * 3
    assert peaks["long"][1] < 400 * frame  # the 1500 frames held would be 1500 * frame
    assert peaks["long"][1] < peaks["short"][1] * 1.25 + 20 * frame

class MeanColour(VideoClient):
    """A model stand-in without TensorFlow: class k's probability is the share of colour channel k."""

    def predict_clips(self, clips):
        mean = clips.mean(axis=(1, 2, 3))
        return {"probabilities": mean / mean.sum(axis=1, keepdims=True)}


def test_a_video_broken_mid_stream_ends_its_timeline_at_the_damage(tmp_path):
    good = tmp_path / "good.avi"
    write_video(good, action_frames(COLOURS["red ball"], 80, 1), codec="mpeg4", gop_size=8)
    data = good.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    whole = predict_timeline(good, MeanColour(16, ["r", "g", "b"]))
    broken = predict_timeline(cut, MeanColour(16, ["r", "g", "b"]))
    assert whole.num_frames == 80 and whole.notes == [] and whole.windows[-1].end_frame == 79
    assert 16 <= broken.num_frames < 60 and broken.windows[-1].end_frame == broken.num_frames - 1
    assert any(f"breaks at frame {broken.num_frames}" in note for note in broken.notes)
    assert broken.windows == whole.windows[:len(broken.windows) - 1] + broken.windows[-1:]
    assert broken.to_dict()["windows"][0]["top"][0]["class"] == "r"
