"""`check_videos` and `bert3d check-videos` on deliberately broken files."""
import argparse
import json
import shutil

import numpy as np
import pytest

from keras_bert3d.cli import check_videos as cli
from keras_bert3d.data.check import check_one, check_videos, find_videos
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import write_video

NUM_FRAMES = 24


def noise_frames(num_frames, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (num_frames, 32, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/good/{a.mp4, b.avi}, root/bad/{empty.mp4, text.mp4, truncated.mp4, short.avi} and the
    names of what is wrong with each bad file."""
    root = tmp_path_factory.mktemp("check")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    write_video(root / "good" / "a.mp4", noise_frames(NUM_FRAMES))
    write_video(root / "good" / "b.avi", noise_frames(NUM_FRAMES, 1))
    (root / "bad" / "empty.mp4").write_bytes(b"")
    (root / "bad" / "text.mp4").write_text("hello, I am a text file\n" * 50)
    for ext in ("mp4", "mkv"):  # cut in half: mp4 loses its index (moov, at the end), mkv its last packets
        write_video(root / f"full.{ext}", noise_frames(NUM_FRAMES, 2))
        data = (root / f"full.{ext}").read_bytes()
        (root / f"full.{ext}").unlink()
        (root / "bad" / f"truncated.{ext}").write_bytes(data[: len(data) // 2])
    write_video(root / "bad" / "short.avi", noise_frames(4))
    (root / "README.txt").write_text("not a video, not checked")
    expected = {"empty.mp4": "empty file", "text.mp4": "not a video", "truncated.mp4": "truncated or corrupt MP4",
                "truncated.mkv": "truncated: its duration implies 24 frames", "short.avi": "too short: has 4 frames"}
    return root, expected


def reasons(report):
    return {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in report["bad"]}


def test_find_videos_walks_by_extension(tree):
    root, _ = tree
    names = [p.rsplit("/", 1)[-1] for p in find_videos(root)]
    assert names == ["empty.mp4", "short.avi", "text.mp4", "truncated.mkv", "truncated.mp4", "a.mp4",
                     "b.avi"]


def test_each_kind_of_bad_file_is_reported_with_its_reason(tree):
    root, expected = tree
    paths = find_videos(root) + [str(root / "bad" / "missing.mp4")]
    report = check_videos(paths, min_frames=8, workers=2)
    assert report["checked"] == len(paths)
    found = reasons(report)
    assert set(found) == set(expected) | {"missing.mp4"}
    for name, reason in expected.items():
        assert reason in found[name], (name, found[name])
    assert "missing" in found["missing.mp4"]


def test_truncated_with_intact_metadata_is_found_by_decoding(tmp_path):
    import av

    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:  # metadata first
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for frame in noise_frames(NUM_FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    assert check_one(path).startswith(f"truncated: the container lists {NUM_FRAMES} frames")
    assert check_one(path, deep=True).startswith(f"truncated: the container lists {NUM_FRAMES} frames")


def test_min_frames_only_flags_short_videos(tree):
    root, _ = tree
    good = [str(root / "good" / "a.mp4"), str(root / "bad" / "short.avi")]
    assert check_videos(good)["bad"] == []
    assert reasons(check_videos(good, min_frames=5)) == {"short.avi": "too short: has 4 frames, fewer than "
                                                                      "min_frames=5"}
    assert check_videos(good, min_frames=4, deep=True)["bad"] == []
    with pytest.raises(ValueError, match="min_frames=0"):
        check_videos(good, min_frames=0)
    with pytest.raises(ValueError, match="single path"):
        check_videos(str(root))


def test_index_missing_entries_and_frame_folders(tree, tmp_path):
    root, _ = tree
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in range(1, 6):
        (folder / f"img_{number:05d}.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "img_00005.jpg").write_bytes(b"")
    index = VideoIndex([VideoRecord(str(root / "good" / "a.mp4"), 0, "a"), VideoRecord(str(folder), 1, "b", 5),
                        VideoRecord(str(broken), 1, "b", 5), VideoRecord(str(folder), 1, "b", 9)],
                       ["a", "b"], missing=[str(tmp_path / "gone.avi")])
    report = check_videos(index)
    assert report["checked"] == 5
    assert [(e["path"], e["reason"].split(" (")[0].split(":")[0]) for e in report["bad"]] == [
        (str(tmp_path / "gone.avi"), "missing"), (str(broken), "frame file img_00005.jpg is empty or not a JPEG"),
        (str(folder), "has 5 rgb frames, the index says 9")]


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_json_and_exit_code(tree, capsys):
    root, expected = tree
    assert cli.run(parse([str(root), "--json", "--min-frames", "8", "--workers", "2"])) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == 7 and set(reasons(report)) == set(expected)
    assert all(set(entry) == {"path", "reason"} for entry in report["bad"])
    assert cli.run(parse([str(root / "good")])) == 0
    assert "checked 2 videos: 0 will not decode" in capsys.readouterr().out


def test_cli_list_file_and_split_file(tree, tmp_path, capsys):
    root, _ = tree
    listing = root / "list.txt"
    listing.write_text("good/a.mp4 1\r\nbad/empty.mp4 2\r\n\r\n")  # UCF101-style, relative to the file
    assert cli.run(parse([str(listing)])) == 1
    out = capsys.readouterr().out
    assert f"{root / 'bad' / 'empty.mp4'}: empty file" in out and "checked 2 videos: 1 will not decode" in out
    with pytest.raises(FileNotFoundError, match="no such folder or file"):
        cli.run(parse([str(tmp_path / "nowhere")]))


def test_cli_with_a_dataset_index(tmp_path, capsys):
    from keras_bert3d.data.synthetic import write_synthetic_dataset

    info = write_synthetic_dataset(tmp_path, num_classes=2, videos_per_class=2, num_frames=24, size=(32, 24))
    (tmp_path / info["videos"][0]["path"]).write_bytes(b"")
    code = cli.run(parse([str(tmp_path), "--dataset", "ucf101", "--subset", "test", "--json"]))
    report = json.loads(capsys.readouterr().out)
    test_list = (tmp_path / "testlist01.txt").read_text().split()
    assert report["checked"] == len(test_list)
    broken = info["videos"][0]["path"]
    assert code == (1 if broken in test_list else 0)
    assert [e["reason"] for e in report["bad"]] == (["empty file (0 bytes)"] if broken in test_list else [])
