"""The embedded ordered-events dataset: layout, splits, reproducibility, the order-only signal."""
import argparse
import json
import os
import re

import numpy as np
import pytest

from keras_bert3d.cli import synth
from keras_bert3d.data.synthetic import COLOURS, write_synthetic_dataset
from keras_bert3d.data.video_reader import probe, read_frames

NUM_CLASSES, PER_CLASS, NUM_FRAMES, SIZE = 4, 10, 40, (64, 48)
RGB = dict(COLOURS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    info = write_synthetic_dataset(root, num_classes=NUM_CLASSES, videos_per_class=PER_CLASS, num_frames=NUM_FRAMES,
                                   size=SIZE, seed=3)
    clips = [read_frames(root / v["path"], np.arange(NUM_FRAMES)) for v in info["videos"]]
    return root, info, clips


def find_events(clip, info):
    """(first frame, last frame) of each event colour, found in the decoded frames."""
    found = {}
    side = max(4, min(SIZE) // 4)
    for name in re.findall(r"[A-Z][a-z]+", info["class_names"][0]):
        close = np.abs(clip.astype(np.int16) - np.array(RGB[name])).max(axis=-1) < 60
        frames = np.nonzero(close.sum(axis=(1, 2)) > side * side // 2)[0]
        found[name] = (int(frames.min()), int(frames.max())) if frames.size else None
    return found


def test_layout_split_files_and_index(dataset):
    root, info, _ = dataset
    assert info["class_names"] == ["RedGreenBlue", "RedBlueGreen", "GreenRedBlue", "GreenBlueRed"]
    assert json.loads((root / "synthetic.json").read_text())["class_names"] == info["class_names"]
    class_ind = (root / "classInd.txt").read_bytes()
    assert class_ind == "".join(f"{i + 1} {n}\r\n" for i, n in enumerate(info["class_names"])).encode()
    exts = set()
    for video in info["videos"]:
        folder, name = video["path"].split("/")
        assert folder == video["class"] and name.startswith(f"v_{folder}_g{video['group']:02d}_c")
        assert (root / video["path"]).stat().st_size > 0
        exts.add(os.path.splitext(name)[1])
    assert exts == {".mp4", ".avi"}
    all_paths = {v["path"] for v in info["videos"]}
    group_of = {v["path"]: v["group"] for v in info["videos"]}
    label_of = {v["path"]: v["label"] for v in info["videos"]}
    for split in (1, 2, 3):
        train_text = (root / f"trainlist0{split}.txt").read_bytes().decode()
        test_text = (root / f"testlist0{split}.txt").read_bytes().decode()
        assert train_text.endswith("\r\n") and "\n" not in train_text.replace("\r\n", "")
        train = dict(line.split() for line in train_text.split("\r\n") if line)
        test = [line for line in test_text.split("\r\n") if line]
        assert all(" " not in line for line in test)  # test lists carry no label
        assert set(train) | set(test) == all_paths and not set(train) & set(test)
        assert all(int(label) == label_of[p] + 1 for p, label in train.items())  # 1-based
        assert not {group_of[p] for p in train} & {group_of[p] for p in test}  # a group number is in one subset
        assert {label_of[p] for p in test} == set(range(NUM_CLASSES))

    from keras_bert3d.data.indexes import ucf101_index

    test = [line for line in (root / "testlist01.txt").read_text().splitlines() if line]
    index = ucf101_index(root, split=1, subset="test")
    assert index.class_names == info["class_names"] and not index.missing
    assert sorted(os.path.relpath(r.path, root) for r in index) == sorted(test)
    assert [r.label for r in index] == [label_of[os.path.relpath(r.path, root)] for r in index]


def test_videos_have_the_asked_shape(dataset):
    root, info, clips = dataset
    for video, clip in zip(info["videos"][:4], clips):
        assert probe(root / video["path"]) == (NUM_FRAMES, 25.0, SIZE[1], SIZE[0])
        assert clip.shape == (NUM_FRAMES, SIZE[1], SIZE[0], 3)


def test_events_appear_in_the_class_order_with_the_guaranteed_gap(dataset):
    _, info, clips = dataset
    gap, margin, length = info["min_gap"], info["margin"], info["event_frames"]
    assert gap >= 1
    for video, clip in zip(info["videos"], clips):
        found = find_events(clip, info)
        assert all(span is not None and span[1] - span[0] + 1 == length for span in found.values()), found
        order = sorted(found, key=lambda name: found[name][0])
        assert "".join(order) == video["class"]
        spans = [found[name] for name in order]
        assert all(b[0] - a[1] - 1 >= gap for a, b in zip(spans, spans[1:]))
        assert spans[0][0] >= margin and spans[-1][1] <= NUM_FRAMES - 1 - margin
        assert [e["start"] for e in video["events"]] == [s[0] for s in spans]


def test_time_average_carries_no_class_signal(dataset):
    _, info, clips = dataset
    labels = np.array([v["label"] for v in info["videos"]])
    means = np.stack([clip.astype(np.float32).mean(axis=0) for clip in clips])  # (N, H, W, 3)
    # Class means of the time-and-space averaged colour agree within the videos' spread.
    colour = means.mean(axis=(1, 2))
    spread = colour.std(axis=0) / np.sqrt(PER_CLASS)
    for label in range(NUM_CLASSES):
        assert np.all(np.abs(colour[labels == label].mean(axis=0) - colour.mean(axis=0)) < 3.5 * spread)
    # Nearest class centroid on the time-averaged clips (4x4 grid), leave-one-out: no better than chance,
    # while the order of events (first frame of each colour) classifies every video.
    grid = means.reshape(len(means), 4, SIZE[1] // 4, 4, SIZE[0] // 4, 3).mean(axis=(2, 4)).reshape(len(means), -1)
    hits = 0
    for i in range(len(grid)):
        keep = np.arange(len(grid)) != i
        centroids = np.stack([grid[keep & (labels == c)].mean(axis=0) for c in range(NUM_CLASSES)])
        hits += int(np.argmin(((centroids - grid[i]) ** 2).sum(axis=1)) == labels[i])
    assert hits / len(grid) <= 2 / NUM_CLASSES
    orders = ["".join(sorted(f, key=lambda n: f[n][0])) for f in (find_events(c, info) for c in clips)]
    assert [info["class_names"].index(o) for o in orders] == labels.tolist()


def test_same_seed_same_frames_other_seed_differs(tmp_path):
    kwargs = dict(num_classes=2, videos_per_class=2, num_frames=24, size=(32, 24))
    seeds = {"a": 7, "b": 7, "c": 8}
    runs = [write_synthetic_dataset(tmp_path / name, seed=seed, **kwargs) for name, seed in seeds.items()]
    assert [v["path"] for v in runs[0]["videos"]] == [v["path"] for v in runs[2]["videos"]]
    for video in runs[0]["videos"]:
        a, b, c = (read_frames(tmp_path / name / video["path"], np.arange(24)) for name in "abc")
        np.testing.assert_array_equal(a, b)
        assert np.abs(a.astype(np.int16) - c).mean() > 5


def test_more_classes_use_more_event_types(tmp_path):
    info = write_synthetic_dataset(tmp_path, num_classes=7, videos_per_class=2, num_frames=32, size=(32, 32),
                                   formats=("mkv",))
    assert info["num_events"] == 4 and len(set(info["class_names"])) == 7
    assert all(len(v["events"]) == 4 for v in info["videos"])
    assert probe(tmp_path / info["videos"][0]["path"]).num_frames == 32


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 1}, "num_classes=1"),
    ({"videos_per_class": 1}, "videos_per_class=1"),
    ({"size": (63, 48)}, r"size=\(63, 48\)"),
    ({"num_frames": 8, "min_gap": 4}, "num_frames=8 is too short"),
    ({"num_classes": 7, "num_events": 3}, "num_classes=7"),
    ({"formats": ("gif",)}, "'.gif'"),
])
def test_invalid_arguments_echo_the_value(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_dataset(tmp_path, **kwargs)


def test_cli_writes_the_dataset(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "out"), "--classes", "2", "--videos-per-class", "2", "--frames", "24",
                              "--size", "32x24", "--seed", "5"])
    assert synth.run(args) == 0
    assert "wrote 4 videos of 24 frames, 32x24, 2 classes (RedGreen, GreenRed)" in capsys.readouterr().out
    info = json.loads((tmp_path / "out" / "synthetic.json").read_text())
    assert probe(tmp_path / "out" / info["videos"][0]["path"]) == (24, 25.0, 24, 32)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        synth.run(parser.parse_args([str(tmp_path / "x"), "--size", "32"]))


def test_demo_event_phases_do_not_tell_the_rank():
    """The demo network strides 8 frames: the phase of an event against that grid must have the same
    distribution whether the event comes first, second or third (else averaged tokens could tell the order)."""
    from keras_bert3d.data.synthetic import DEMO, _event_starts

    rng = np.random.default_rng(0)
    starts = np.stack([_event_starts(rng, DEMO["num_frames"], 3, DEMO["event_frames"], DEMO["min_gap"],
                                     DEMO["margin"]) for _ in range(4000)])
    assert np.all(np.diff(starts, axis=1) >= DEMO["event_frames"] + DEMO["min_gap"])
    assert starts.min() >= DEMO["margin"]
    assert starts.max() + DEMO["event_frames"] <= DEMO["num_frames"] - DEMO["margin"]
    phases = [np.bincount(starts[:, k] % 8, minlength=8) / len(starts) for k in range(3)]
    assert max(np.abs(phases[k] - phases[0]).max() for k in (1, 2)) < 0.03
