"""TV-L1 flow extraction: a textured square moving right by K px/frame gives flow_x ~ +K inside it."""
import json
import os
import shutil
import types

import numpy as np
import pytest

from keras_bert3d.data import flow
from keras_bert3d.data.jpeg_frames import decode_jpeg
from keras_bert3d.data.synthetic import write_video

cv2 = pytest.importorskip("cv2", reason="TV-L1 needs opencv-contrib: pip install 'keras_bert3d[flow]'")
if not hasattr(cv2, "optflow"):
    pytest.skip("OpenCV without the contrib optflow module", allow_module_level=True)

HEIGHT, WIDTH, SIDE, TOP, LEFT = 48, 64, 16, 16, 8
NUM_FRAMES, SHIFT = 6, 2  # the square moves SHIFT px right per frame


def moving_square(num_frames=NUM_FRAMES, shift=SHIFT, seed=0):
    """A static textured background and a textured square moving right by ``shift`` px per frame."""
    rng = np.random.default_rng(seed)
    background = rng.integers([0, 30, 60], [60, 90, 120], (HEIGHT, WIDTH, 3)).astype(np.uint8)  # R < G < B
    texture = rng.integers(130, 256, (SIDE, SIDE, 3)).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    for t in range(num_frames):
        frames[t, TOP:TOP + SIDE, LEFT + shift * t:LEFT + shift * t + SIDE] = texture
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("flowvid") / "v_move_g01_c01.avi"
    write_video(str(path), moving_square(), codec="mjpeg")  # near-lossless, so the texture survives
    return str(path)


def test_uint8_mapping_is_linear_clipped_and_invertible():
    bound = 20.0
    values = np.array([-30.0, -20.0, -10.0, 0.0, 2.0, 10.0, 20.0, 25.0])
    encoded = flow.flow_to_uint8(values, bound)
    expected = np.rint((np.clip(values, -bound, bound) + bound) * 255 / (2 * bound))
    np.testing.assert_array_equal(encoded, expected)
    assert encoded[0] == 0 and encoded[-1] == 255
    step = 2 * bound / 255
    np.testing.assert_allclose(flow.flow_from_uint8(encoded[1:-1], bound), values[1:-1], atol=step / 2 + 1e-6)
    with pytest.raises(ValueError, match="-1"):
        flow.flow_to_uint8(values, -1)


def test_moving_square_flow(video, tmp_path):
    out = tmp_path / "v_move_g01_c01"
    pairs = flow.extract_flow(video, out, write_rgb=True)
    assert pairs == NUM_FRAMES - 1
    names = set(os.listdir(out))
    for i in range(1, NUM_FRAMES):
        assert {f"flow_x_{i:05d}.jpg", f"flow_y_{i:05d}.jpg"} <= names
    assert {f"img_{i:05d}.jpg" for i in range(1, NUM_FRAMES + 1)} <= names
    assert len(names) == 2 * (NUM_FRAMES - 1) + NUM_FRAMES
    assert not os.path.exists(str(out) + ".tmp")
    margin = 3
    for i in range(1, NUM_FRAMES):
        fx = flow.flow_from_uint8(decode_jpeg(str(out / f"flow_x_{i:05d}.jpg"), grayscale=True))
        fy = flow.flow_from_uint8(decode_jpeg(str(out / f"flow_y_{i:05d}.jpg"), grayscale=True))
        assert fx.shape == (HEIGHT, WIDTH)
        left = LEFT + SHIFT * (i - 1)  # the square in frame i (1-based), moving to frame i + 1
        inside = (slice(TOP + margin, TOP + SIDE - margin), slice(left + margin, left + SIDE - margin))
        assert abs(np.median(fx[inside]) - SHIFT) < 0.5, np.median(fx[inside])
        assert abs(np.median(fy[inside])) < 0.5
        static = (slice(TOP + SIDE + 4, HEIGHT), slice(0, WIDTH))  # textured background below the square
        assert abs(np.median(fx[static])) < 0.5
    rgb = decode_jpeg(str(out / "img_00001.jpg"))  # RGB order kept (JPEG keeps each channel's mean)
    np.testing.assert_allclose(rgb.mean(axis=(0, 1)), moving_square()[0].mean(axis=(0, 1)), atol=4)


def test_size_and_too_short_video(video, tmp_path):
    size = [HEIGHT // 2, WIDTH // 2]
    flow.extract_flow(video, tmp_path / "small", size=size)
    assert decode_jpeg(str(tmp_path / "small" / "flow_x_00001.jpg"), grayscale=True).shape == tuple(size)
    single = tmp_path / "one.avi"
    write_video(str(single), moving_square(num_frames=1), codec="mjpeg")
    with pytest.raises(ValueError, match="too few frames"):
        flow.extract_flow(single, tmp_path / "one")
    assert not os.path.exists(tmp_path / "one") and not os.path.exists(str(tmp_path / "one") + ".tmp")


def test_dataset_parallel_resumable_with_split_file(video, tmp_path, capsys):
    from keras_bert3d.cli import flow as flow_cli

    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    video = shutil.copy(video, tmp_path)
    second = tmp_path / "v_move_g02_c01.avi"
    write_video(str(second), moving_square(num_frames=4, seed=1), codec="mjpeg")
    index = tmp_path / "index.json"
    entries = [{"path": video, "label": 3, "class": "Move"}, {"path": str(second), "label": 1, "class": "Move"},
               {"path": str(tmp_path / "bad.mp4"), "label": 0, "class": "Bad"}]
    index.write_text(json.dumps(entries))
    out = tmp_path / "flow"
    args = types.SimpleNamespace(source=str(index), out_dir=str(out), workers=2, bound=20.0, size=None, rgb=False,
                                 quality=95, no_progress=True)
    assert flow_cli.run(args) == 1  # one video failed
    printed = capsys.readouterr().out
    assert "2 written" in printed and "bad.mp4" in printed
    lines = sorted((out / "flow_split.txt").read_text().split("\n")[:-1])
    assert lines == ["v_move_g01_c01 5 3", "v_move_g02_c01 3 1"]  # <folder> <flow frames> <label>
    stamp = os.stat(out / "v_move_g01_c01" / "flow_x_00001.jpg").st_mtime_ns
    report = flow.extract_flow_dataset(tmp_path, out, workers=1, progress=False)  # a folder this time
    assert sorted(report["skipped"]) == ["v_move_g01_c01", "v_move_g02_c01"]
    assert report["written"] == [] and [b["path"] for b in report["bad"]] == [str(tmp_path / "bad.mp4")]
    assert os.stat(out / "v_move_g01_c01" / "flow_x_00001.jpg").st_mtime_ns == stamp


def test_duplicate_output_folders_are_refused(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_video(str(tmp_path / sub / "same.avi"), moving_square(num_frames=2), codec="mjpeg")
    with pytest.raises(ValueError, match="same"):
        flow.extract_flow_dataset(tmp_path, tmp_path / "out", workers=1, progress=False)
