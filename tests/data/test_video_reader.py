"""PyAV decoding: probe, frame-exact seeking in mp4/avi/mkv, decoding only the needed range, bad files."""
import concurrent.futures
import pickle
import re

import av
import numpy as np
import pytest

from keras_bert3d.data import video_reader
from keras_bert3d.data.synthetic import frame_numbers, numbered_frames, write_video
from keras_bert3d.data.video_reader import VideoDecodeError, VideoInfo, probe, read_frames

NUM_FRAMES, HEIGHT, WIDTH, GOP = 48, 48, 64, 8
# (file name, codec): H.264 (B-frames: decode order != display order), MPEG-4 part 2, MJPEG, and
# Matroska, which stores no frame count (probe counts packets).
FORMATS = [("h264.mp4", "libx264"), ("mpeg4.avi", "mpeg4"), ("mjpeg.avi", "mjpeg"), ("h264.mkv", "libx264")]


def noisy_numbered_frames(num_frames, seed=0):
    """Frame i shows i in binary bands, plus noise so the files are not trivially small."""
    frames = numbered_frames(num_frames, HEIGHT, WIDTH).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-25, 26, frames.shape)
    return np.clip(frames + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    frames = noisy_numbered_frames(NUM_FRAMES)
    paths = {}
    for name, codec in FORMATS:
        paths[name] = folder / name
        write_video(paths[name], frames, fps=25, codec=codec, gop_size=GOP)
    return paths


@pytest.fixture
def decoded(monkeypatch):
    """Records the index of every frame the decoder outputs."""
    seen = []
    monkeypatch.setattr(video_reader, "_frame_hook", lambda path, index: seen.append(index))
    return seen


@pytest.mark.parametrize("name", [n for n, _ in FORMATS])
def test_probe_reads_metadata(videos, name):
    info = probe(videos[name])
    assert isinstance(info, VideoInfo)
    assert info == (NUM_FRAMES, 25.0, HEIGHT, WIDTH)


def test_mkv_has_no_stored_frame_count(videos):
    with av.open(str(videos["h264.mkv"])) as container:  # so probe's packet-counting fallback is exercised
        assert container.streams.video[0].frames == 0


@pytest.mark.parametrize("name", [n for n, _ in FORMATS])
def test_random_index_sets_decode_the_right_frames(videos, name):
    rng = np.random.default_rng(1)
    for _ in range(6):
        indices = rng.integers(0, NUM_FRAMES, size=rng.integers(1, 12))  # unsorted, with repeats
        clip = read_frames(videos[name], indices)
        assert clip.dtype == np.uint8 and clip.shape == (len(indices), HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(frame_numbers(clip, NUM_FRAMES), indices)


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg4.avi"])
def test_every_single_frame_seeks_exactly(videos, name):
    # Every position relative to the keyframes, including B-frames shown before their keyframe's successor.
    for index in range(NUM_FRAMES):
        np.testing.assert_array_equal(frame_numbers(read_frames(videos[name], [index]), NUM_FRAMES), [index])


def test_consecutive_clip_in_order(videos):
    indices = np.arange(13, 13 + 16)
    clip = read_frames(videos["h264.mp4"], indices)
    np.testing.assert_array_equal(frame_numbers(clip, NUM_FRAMES), indices)
    reverse = read_frames(videos["h264.mp4"], indices[::-1])
    np.testing.assert_array_equal(reverse, clip[::-1])


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg4.avi", "h264.mkv"])
def test_middle_clip_decodes_only_its_range(videos, name, decoded):
    read_frames(videos[name], np.arange(NUM_FRAMES))
    assert len(decoded) == NUM_FRAMES
    decoded.clear()
    start, length = 30, 8
    read_frames(videos[name], np.arange(start, start + length))
    # From the keyframe at or before `start` (at most one GOP earlier) to the clip's last frame.
    assert min(decoded) > 0 and start - GOP <= min(decoded) <= start
    assert max(decoded) == start + length - 1
    assert len(decoded) <= length + GOP < NUM_FRAMES


def test_seek_landing_past_the_clip_falls_back_to_the_start(videos, decoded, monkeypatch):
    # Some demuxers index keyframes by decode time and land after the target: decode from the start.
    seek = video_reader._seek_packets
    monkeypatch.setattr(video_reader, "_seek_packets", lambda c, s, clock, first: seek(c, s, clock, first + 2 * GOP))
    clip = read_frames(videos["h264.mp4"], [21, 20])
    np.testing.assert_array_equal(frame_numbers(clip, NUM_FRAMES), [21, 20])
    assert min(decoded) == 0 and max(decoded) == 21


def test_empty_index_list(videos):
    assert read_frames(videos["h264.mp4"], []).shape == (0, HEIGHT, WIDTH, 3)


def test_negative_index_is_a_user_error(videos):
    with pytest.raises(ValueError, match=r"received \[3, -1\]") as info:
        read_frames(videos["h264.mp4"], [3, -1])
    assert not isinstance(info.value, VideoDecodeError)


def test_index_beyond_the_video(videos):
    with pytest.raises(VideoDecodeError, match=f"has {NUM_FRAMES} frames, clip needs index {NUM_FRAMES + 2}"):
        read_frames(videos["mpeg4.avi"], [0, NUM_FRAMES + 2])


def test_truncated_video_gives_what_exists(tmp_path):
    # moov atom first (as streaming downloads are), so the cut file still lists all 48 frames.
    path = tmp_path / "full.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = WIDTH, HEIGHT, "yuv420p", GOP
        for frame in noisy_numbered_frames(NUM_FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert probe(cut).num_frames == NUM_FRAMES
    np.testing.assert_array_equal(frame_numbers(read_frames(cut, [0, 5, 2]), NUM_FRAMES), [0, 5, 2])
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4: damaged or cut at frame \d+ of the 48 it lists: frames "
                                               r"0-\d+ decode, the clip needs index 47") as info:
        read_frames(cut, [0, 47])
    readable = int(re.search(r"cut at frame (\d+)", str(info.value)).group(1))
    assert 5 < readable < NUM_FRAMES and info.value.decodable == readable
    assert len(read_frames(cut, np.arange(readable))) == readable  # everything before the damage decodes


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.mark.parametrize("kind, reason", [
    ("missing", "missing"), ("empty", "empty file"), ("text", "not a video"), ("audio", "no video stream"),
    ("folder", "not a video")])
def test_bad_files_name_the_file_and_reason(tmp_path, kind, reason):
    path = tmp_path / ("sound.wav" if kind == "audio" else f"{kind}.mp4")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "audio":
        _audio_only(path)
    elif kind == "folder":
        path.mkdir()
    for call in (lambda: probe(path), lambda: read_frames(path, [0])):
        with pytest.raises(VideoDecodeError, match=reason) as info:
            call()
        assert str(path) in str(info.value) and info.value.path == str(path)


def test_decode_error_survives_pickling():
    error = pickle.loads(pickle.dumps(VideoDecodeError("/data/v.avi", "empty file (0 bytes)")))
    assert isinstance(error, ValueError) and (error.path, error.reason) == ("/data/v.avi", "empty file (0 bytes)")
    assert str(error) == "/data/v.avi: empty file (0 bytes)"


def test_parallel_calls_agree_with_serial(videos):
    rng = np.random.default_rng(2)
    jobs = [(videos[n], rng.integers(0, NUM_FRAMES, 6)) for n in ("h264.mp4", "mpeg4.avi") for _ in range(6)]
    serial = [read_frames(p, i) for p, i in jobs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda job: read_frames(*job), jobs))
    for (_, indices), a, b in zip(jobs, serial, parallel):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(frame_numbers(b, NUM_FRAMES), indices)
