"""Videos as real cameras write them: variable and NTSC frame rates, a stream starting at a non-zero timestamp,
B-frames, odd, wide and portrait sizes, a rotation flag. The clip sampler must pick the same frames as on a
constant-rate copy of the same frames: every test video shows its frame number (binary bands), and every clip of
the reference's sampling rules must decode to exactly the numbers it asked for, as on the copy."""
import fractions

import av
import numpy as np
import pytest

from keras_bert3d.data import sampling
from keras_bert3d.data.synthetic import frame_numbers, numbered_frames
from keras_bert3d.data.video_reader import probe, read_frames

NUM_FRAMES, CLIP = 50, 8


def write(path, frames, rate=25, pts=None, time_base=None, codec="libx264", pix_fmt="yuv420p", rotation=None,
          bframes=3):
    """Encodes with PyAV, optionally with explicit timestamps (``pts`` in ``time_base`` units) and a rotation."""
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast", "bf": str(bframes)}
        if time_base is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def irregular_pts(seed, start_ms=1500):
    """Millisecond timestamps 15-70 ms apart (a phone's variable frame rate), starting at ``start_ms``."""
    return start_ms + np.concatenate([[0], np.cumsum(np.random.default_rng(seed).integers(15, 71, NUM_FRAMES - 1))])


def clips_of(num_frames):
    """Every clip the reference's rules take from a video of ``num_frames`` frames."""
    rows = [sampling.train_indices(num_frames, CLIP, seed) for seed in range(4)]
    rows.append(sampling.val_indices(num_frames, CLIP))
    rows.extend(sampling.cover_clips(num_frames, CLIP))
    rows.extend(sampling.uniform_clips(num_frames, CLIP, 3, stride=2))
    return rows


MS = fractions.Fraction(1, 1000)
CASES = {  # name -> (file name, frame size (H, W), write arguments)
    "variable rate": ("vfr.mp4", (48, 64), dict(pts=irregular_pts(0), time_base=MS)),
    "variable rate mkv": ("vfr.mkv", (48, 64), dict(pts=irregular_pts(1), time_base=MS)),
    "29.97 fps": ("ntsc.mp4", (48, 64), dict(rate=fractions.Fraction(30000, 1001))),
    "23.976 fps": ("film.mov", (48, 64), dict(rate=fractions.Fraction(24000, 1001))),
    "non-zero start": ("late.mp4", (48, 64), dict(pts=3600 + 40 * np.arange(NUM_FRAMES), time_base=MS)),
    "no B-frames": ("ip.mp4", (48, 64), dict(bframes=0)),
    "odd size": ("odd.mp4", (47, 33), dict(pix_fmt="yuv444p")),
    "wide": ("wide.mp4", (36, 160), {}),
    "portrait": ("portrait.mp4", (96, 36), {}),
    "mpeg-4 avi at 29.97": ("ntsc.avi", (48, 64), dict(codec="mpeg4", rate=fractions.Fraction(30000, 1001))),
}


@pytest.fixture(scope="module")
def constant_rate_copy(tmp_path_factory):
    frames = numbered_frames(NUM_FRAMES, 48, 64)
    return write(tmp_path_factory.mktemp("cfr") / "cfr.mp4", frames)


@pytest.mark.parametrize("case", list(CASES))
def test_sampler_picks_the_same_frames_as_on_a_constant_rate_copy(case, constant_rate_copy, tmp_path):
    name, (height, width), kwargs = CASES[case]
    path = write(tmp_path / name, numbered_frames(NUM_FRAMES, height, width), **kwargs)
    info, reference = probe(path), probe(constant_rate_copy)
    assert info.num_frames == reference.num_frames == NUM_FRAMES
    assert (info.height, info.width) == (height, width)
    for indices in clips_of(info.num_frames):
        clip = read_frames(path, indices)
        assert clip.shape == (CLIP, height, width, 3)
        on_copy = frame_numbers(read_frames(constant_rate_copy, indices), NUM_FRAMES)
        np.testing.assert_array_equal(frame_numbers(clip, NUM_FRAMES), on_copy, err_msg=f"{case}: {indices}")
        np.testing.assert_array_equal(on_copy, indices)


def test_the_old_timestamp_rule_would_have_picked_other_frames():
    """Negative control: with irregular timestamps, ``round(t * average fps)`` is not the frame's rank."""
    pts = irregular_pts(0)
    fps = (NUM_FRAMES - 1) / ((pts[-1] - pts[0]) / 1000)
    by_time = np.round((pts - pts[0]) / 1000 * fps).astype(int)
    assert (by_time != np.arange(NUM_FRAMES)).sum() > NUM_FRAMES // 4


@pytest.mark.parametrize("rotation", [90, 270])
def test_a_rotation_flag_gives_upright_frames(rotation, tmp_path):
    frames = numbered_frames(NUM_FRAMES, 48, 64)
    frames[:, :6, :6] = (255, 0, 0)  # a red corner shows where "top-left" went
    path = write(tmp_path / f"rot{rotation}.mp4", frames, rotation=rotation)
    info = probe(path)
    assert (info.height, info.width) == (64, 48)  # the upright size
    indices = sampling.val_indices(NUM_FRAMES, CLIP)
    clip = read_frames(path, indices)
    assert clip.shape == (CLIP, 64, 48, 3)
    expected = np.rot90(frames[indices], rotation // 90, axes=(1, 2))
    assert np.abs(clip.astype(int) - expected).mean() < 6  # the encoder's loss only
    back = np.rot90(clip, -(rotation // 90), axes=(1, 2))
    np.testing.assert_array_equal(frame_numbers(back, NUM_FRAMES), indices)
    unflagged = write(tmp_path / "plain.mp4", frames)
    def redness(images):
        corner = images[:, 1:5, 1:5].astype(int)
        return (corner[..., 0] - corner[..., 1]).mean()

    assert redness(read_frames(unflagged, indices)) > 200 and redness(clip) < 50  # the flag moved the corner
