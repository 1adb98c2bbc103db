"""What a training clip costs the video reader: one open and at most one packet-timestamp pass per file and
process (a constant-rate table cached as start/step/count), no decoding of the lead-in frames nothing refers to,
no resize when the video has the model's frame size; and the frames stay those of a full decode."""
import av
import numpy as np
import pytest

from keras_bert3d.data import frame_timing, video_reader, video_sources
from keras_bert3d.data.bad_videos import BadVideoCounter
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.data.synthetic import frame_numbers, numbered_frames, write_video
from keras_bert3d.data.video_reader import read_frames

NUM_FRAMES, HEIGHT, WIDTH, GOP = 48, 48, 64, 16


def noisy(num_frames, seed=0):
    frames = numbered_frames(num_frames, HEIGHT, WIDTH).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-25, 26, frames.shape)
    return np.clip(frames + noise, 0, 255).astype(np.uint8)


def write_bframes(path, frames, gop=GOP):
    """H.264 with 3 B-frames (b-pyramid: the middle one a reference, the other two not)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = WIDTH, HEIGHT, "yuv420p", gop
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "12", "bf": "3", "b-pyramid": "normal", "keyint_min": str(gop), "sc_threshold": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paths")
    frames = noisy(NUM_FRAMES)
    paths = {"bframes.mp4": write_bframes(folder / "bframes.mp4", frames)}
    paths["mpeg4.avi"] = folder / "mpeg4.avi"
    write_video(paths["mpeg4.avi"], frames, fps=25, codec="mpeg4", gop_size=8)
    return paths


def full_decode(path):
    """Every frame, decoded from the start without seeking, in presentation order (the reference)."""
    with av.open(str(path)) as container:
        frames = sorted(container.decode(video=0), key=lambda frame: frame.pts)
        return np.stack([frame.to_ndarray(format="rgb24") for frame in frames])


@pytest.fixture
def fresh_tables(monkeypatch):
    """An empty table cache; returns the list of files whose packets were demuxed for a table."""
    passes = []
    monkeypatch.setattr(frame_timing, "_TABLES", type(frame_timing._TABLES)())
    monkeypatch.setattr(frame_timing, "_TABLE_BYTES", [0])
    monkeypatch.setattr(frame_timing, "_demux_hook", passes.append)
    return passes


def test_lead_in_frames_nothing_refers_to_are_not_decoded(videos, monkeypatch):
    path, reference = videos["bframes.mp4"], full_decode(videos["bframes.mp4"])
    first, last = GOP + 9, GOP + 12  # 9 frames into the second GOP
    seen = []
    monkeypatch.setattr(video_reader, "_frame_hook", lambda _, index: seen.append(index))
    clip = read_frames(path, np.arange(first, last + 1))
    np.testing.assert_array_equal(clip, reference[first:last + 1])  # pixel for pixel a full decode's frames
    lead_in = sorted(i for i in seen if i < first)
    assert lead_in[0] == GOP and len(lead_in) < first - GOP  # from the keyframe, with frames left out
    assert sorted(i for i in seen if i >= first) == list(range(first, last + 1))
    seen.clear()
    container, stream = video_reader.open_video(str(path))  # negative control: decoding every lead-in frame
    with container:
        clock = frame_timing.Clock(stream, frame_timing.frame_table(str(path)).pts)
        for position, _ in video_reader._decoded(container, stream, clock, first, str(path)):
            if position >= last:
                break
    assert sorted(i for i in seen if i < first) == list(range(GOP, first))


@pytest.mark.parametrize("name", ["bframes.mp4", "mpeg4.avi"])
def test_every_clip_equals_a_full_decode(videos, name, monkeypatch):
    reference = full_decode(videos[name])
    rng = np.random.default_rng(3)
    for start in range(0, NUM_FRAMES - 8, 5):  # each read with an empty cache: the table from its own container
        monkeypatch.setattr(frame_timing, "_TABLES", type(frame_timing._TABLES)())
        indices = rng.permutation(np.arange(start, start + 8))
        np.testing.assert_array_equal(read_frames(videos[name], indices), reference[indices])
        np.testing.assert_array_equal(frame_numbers(reference[indices], NUM_FRAMES), indices)


def test_one_open_and_one_table_pass_per_file_and_process(videos, fresh_tables, monkeypatch):
    opened = []
    for module in (video_reader, frame_timing):
        real = module.open_video
        monkeypatch.setattr(module, "open_video", lambda path, *a, real=real: opened.append(path) or real(path, *a))
    plan = video_sources.ClipPlan("train", 8, 1, False, "center", "rgb", True, BadVideoCounter())
    path = str(videos["bframes.mp4"])
    frames, ok = plan.video(path.encode(), -1, 7)  # the frame count is not in the index: read from the file
    assert ok and frames.shape == (8, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(frame_numbers(frames, NUM_FRAMES), plan.indices(NUM_FRAMES, 7))
    assert fresh_tables == [path] and len(opened) == 1  # the table's pass and the clip: one open
    opened.clear()
    for seed in range(3):
        plan.video(path.encode(), -1, seed)
    assert fresh_tables == [path] and len(opened) == 3  # later clips: one open each, no pass


def test_a_constant_rate_table_is_cached_as_start_step_count(videos, fresh_tables, tmp_path):
    table = frame_timing.frame_table(str(videos["bframes.mp4"]))
    (stored, size), = frame_timing._TABLES.values()
    start, step, count, rotation = stored
    assert (count, rotation) == (NUM_FRAMES, 0) and size < 1000
    np.testing.assert_array_equal(start + step * np.arange(count), table.pts)
    np.testing.assert_array_equal(frame_timing.frame_table(str(videos["bframes.mp4"])).pts, table.pts)  # unpacked
    irregular = frame_timing.FrameTable(np.array([0, 40, 80, 130, 160]), 90)
    kept, _ = frame_timing._pack(irregular)
    assert kept is irregular  # an irregular table keeps its array
    assert frame_timing._unpack(frame_timing._pack(frame_timing.FrameTable(np.arange(5) * 3 + 7, 270))[0]) \
        .pts.tolist() == [7, 10, 13, 16, 19]


def test_the_cache_keeps_to_its_byte_budget(videos, fresh_tables, monkeypatch):
    monkeypatch.setattr(frame_timing, "MAX_TABLE_BYTES", frame_timing._ENTRY_BYTES)  # room for one table
    a, b = str(videos["bframes.mp4"]), str(videos["mpeg4.avi"])
    for path in (a, a, b, b, a):
        frame_timing.frame_table(path)
    assert fresh_tables == [a, b, a] and len(frame_timing._TABLES) == 1
    assert frame_timing._TABLE_BYTES[0] <= frame_timing.MAX_TABLE_BYTES


def test_frames_of_the_model_size_are_not_resized(videos):
    """A video already at ``frame_size`` skips the resize: what it would give is the frames themselves."""
    prep = {"modality": "rgb", "num_frames": 8, "frame_size": [HEIGHT, WIDTH], "crop_size": HEIGHT,
            "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    index = VideoIndex([VideoRecord(videos["mpeg4.avi"], 0, "a")], ["a"])
    (clips, _), = make_dataset(index, prep, "val", batch_size=1).dataset
    x = (WIDTH - HEIGHT) // 2
    raw = read_frames(videos["mpeg4.avi"], np.arange(20, 28))  # the centred 8 of 48
    np.testing.assert_array_equal(clips.numpy()[0], raw[:, :, x:x + HEIGHT].astype(np.float32))
    import tensorflow as tf  # the bilinear rule at the same size is the identity: skipping it changes nothing

    same = tf.image.resize(raw, [HEIGHT, WIDTH], method="bilinear", antialias=False)
    np.testing.assert_array_equal(np.round(same.numpy()), raw)


def test_a_container_that_cannot_seek_back_after_the_table_pass_is_opened_again(videos, fresh_tables, monkeypatch):
    real, failed = frame_timing.frame_table, []

    def seek_fails_once(path, opened=None):
        table = real(path, opened)
        if opened is not None and not failed:
            failed.append(path)
            raise av.error.FFmpegError(22, "cannot seek")
        return table

    monkeypatch.setattr(frame_timing, "frame_table", seek_fails_once)
    path = str(videos["bframes.mp4"])
    np.testing.assert_array_equal(frame_numbers(read_frames(path, [0, 3, 1]), NUM_FRAMES), [0, 3, 1])
    assert failed == [path] and fresh_tables == [path]  # the table was read once, the clip from a fresh open


def test_the_lead_in_of_other_codecs_is_decoded_in_full(tmp_path, monkeypatch):
    path = tmp_path / "hevc.mp4"
    with av.open(str(path), "w") as container:  # HEVC with B-frames: not in LEAD_IN_SKIP_CODECS
        stream = container.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = WIDTH, HEIGHT, "yuv420p", GOP
        stream.options = {"x265-params": f"log-level=none:bframes=3:keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        for frame in noisy(NUM_FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    assert "hevc" not in video_reader.LEAD_IN_SKIP_CODECS
    seen = []
    monkeypatch.setattr(video_reader, "_frame_hook", lambda _, index: seen.append(index))
    first = GOP + 9
    clip = read_frames(path, np.arange(first, first + 4))
    np.testing.assert_array_equal(clip, full_decode(path)[first:first + 4])
    assert sorted(i for i in seen if i < first) == list(range(GOP, first))
