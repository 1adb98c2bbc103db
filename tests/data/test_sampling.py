"""Clip sampling against the rules of REFERENCE.md 5.10 and 5.12, written 1-based as the reference writes them."""
import numpy as np
import pytest

from keras_bert3d.data import sampling


def reference_frames(n, offset, length):
    """5.10 literally: 1-based frame for k = 1..L is (k + offset) mod n with 0 mapped to n; returned 0-based."""
    frames = []
    for k in range(1, length + 1):
        f = (k + offset) % n
        frames.append((n if f == 0 else f) - 1)
    return np.array(frames)


def reference_cover(n, length):
    """5.12 (VideoSpatialPrediction3D) literally, 1-based, returned 0-based as (clips, L)."""
    duration = n - 1
    starts = list(range(1, duration - length, length))
    if not starts:
        frames = list(range(1, duration + 2)) * (length // (duration + 1)) + list(range(1, length % (duration + 1) + 1))
        return np.array(frames)[None] - 1
    shift = int((duration - (starts[-1] + length)) / 2)
    return np.array([[j + start + shift for j in range(1, length + 1)] for start in starts]) - 1


@pytest.mark.parametrize("n", [1, 2, 5, 31, 32, 33, 34, 64, 65, 66, 100, 301])
def test_val_matches_reference(n):
    length = 32
    duration = n - 1
    offset = int((duration - length + 1) / 2) if duration >= length else 0
    np.testing.assert_array_equal(sampling.val_indices(n, length), reference_frames(n, offset, length))


def test_val_hand_cases():
    # n=100, L=32: D=99, off=int(68/2)=34 -> 1-based 35..66 -> 0-based 34..65.
    np.testing.assert_array_equal(sampling.val_indices(100, 32), np.arange(34, 66))
    # n=70, L=64: off=int(7/2)=3.
    np.testing.assert_array_equal(sampling.val_indices(70, 64), np.arange(3, 67))
    # n=64, L=64: D=63 < 64 -> loop from frame 1: all 64 frames in order.
    np.testing.assert_array_equal(sampling.val_indices(64, 64), np.arange(64))


@pytest.mark.parametrize("n", [1, 3, 20, 32, 33])
def test_train_short_videos_loop_like_reference(n):
    length = 32
    rng = np.random.default_rng(0)
    if n - 1 < length:
        np.testing.assert_array_equal(sampling.train_indices(n, length, rng), reference_frames(n, 0, length))
    else:  # D == L: the only offset is 0
        np.testing.assert_array_equal(sampling.train_indices(n, length, rng), np.arange(length))


def test_train_loop_hand_case():
    # n=10, L=32: frames 1..10, 1..10, 1..10, 1, 2.
    expected = np.concatenate([np.arange(10)] * 3 + [np.arange(2)])
    np.testing.assert_array_equal(sampling.train_indices(10, 32, 0), expected)


def test_train_offsets_cover_reference_range():
    n, length = 100, 32
    starts = set()
    rng = np.random.default_rng(1)
    for _ in range(3000):
        clip = sampling.train_indices(n, length, rng)
        np.testing.assert_array_equal(np.diff(clip), np.ones(length - 1))
        starts.add(int(clip[0]))
    # off ~ U{0..D-L}: 0..67; the last frame (index 99) is never used.
    assert starts == set(range(0, (n - 1) - length + 1))


def test_train_is_deterministic_for_a_seed():
    a = sampling.train_indices(500, 16, 7, stride=3, jitter=True)
    b = sampling.train_indices(500, 16, 7, stride=3, jitter=True)
    np.testing.assert_array_equal(a, b)


def test_stride_and_jitter():
    n, length, stride = 100, 16, 2
    span = (length - 1) * stride + 1
    rng = np.random.default_rng(2)
    firsts = set()
    for _ in range(2000):
        clip = sampling.train_indices(n, length, rng, stride=stride)
        np.testing.assert_array_equal(np.diff(clip), np.full(length - 1, stride))
        firsts.add(int(clip[0]))
    assert firsts == set(range(0, (n - 1) - span + 1))
    off = ((n - 1) - span + 1) // 2
    np.testing.assert_array_equal(sampling.val_indices(n, length, stride), off + stride * np.arange(length))
    for _ in range(200):
        clip = sampling.train_indices(n, length, rng, stride=4, jitter=True)
        within = clip - 4 * np.arange(length)  # offset + jitter in 0..3, capped at the last frame
        assert within.max() - within.min() <= 3 and clip.min() >= 0 and clip.max() <= n - 1
        assert np.all(np.diff(clip) > 0)


@pytest.mark.parametrize("n,length", [(100, 32), (300, 64), (97, 32), (66, 64), (65, 32), (20, 32), (1, 8), (1000, 64)])
def test_cover_matches_reference(n, length):
    np.testing.assert_array_equal(sampling.cover_clips(n, length), reference_cover(n, length))


def test_cover_hand_cases():
    # n=100, L=32: starts 1, 33, 65 (< D-L = 67); shift int((99-97)/2) = 1 -> 0-based 2.., 34.., 66..
    clips = sampling.cover_clips(100, 32)
    np.testing.assert_array_equal(clips[:, 0], [2, 34, 66])
    np.testing.assert_array_equal(clips[-1], np.arange(66, 98))
    # n=300, L=64: starts 1, 65, 129, 193; shift int((299-257)/2) = 21.
    np.testing.assert_array_equal(sampling.cover_clips(300, 64)[:, 0], [22, 86, 150, 214])
    # n=20, L=32: no full clip: frames 1..20 then 1..12.
    np.testing.assert_array_equal(sampling.cover_clips(20, 32)[0], np.concatenate([np.arange(20), np.arange(12)]))


def test_uniform_clips():
    # interval (100 - 32 + 1) / 3 = 23: starts int(11.5), int(34.5), int(57.5).
    clips = sampling.uniform_clips(100, 32, 3)
    np.testing.assert_array_equal(clips[:, 0], [11, 34, 57])
    np.testing.assert_array_equal(clips[2], np.arange(57, 89))
    short = sampling.uniform_clips(10, 32, 2)
    np.testing.assert_array_equal(short[0], short[1])
    np.testing.assert_array_equal(short[0], np.arange(32) % 10)
    assert sampling.uniform_clips(1000, 8, 5, stride=4).shape == (5, 8)


def test_eval_clips_dispatch():
    np.testing.assert_array_equal(sampling.eval_clips(100, 32, "center"), sampling.val_indices(100, 32)[None])
    np.testing.assert_array_equal(sampling.eval_clips(100, 32, "cover"), sampling.cover_clips(100, 32))
    np.testing.assert_array_equal(sampling.eval_clips(100, 32, 4), sampling.uniform_clips(100, 32, 4))
    with pytest.raises(ValueError, match="middle"):
        sampling.eval_clips(100, 32, "middle")


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_frames=0, clip_len=8), "num_frames=0"),
    (dict(num_frames=10, clip_len=0), "clip_len=0"),
    (dict(num_frames=10, clip_len=8, stride=0), "stride=0"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampling.val_indices(**kwargs)


def test_parse_clips():
    from keras_bert3d.data.sampling import parse_clips

    assert parse_clips("cover") == "cover" and parse_clips("center") == "center"
    assert parse_clips("3") == 3 and parse_clips(4) == 4
    for bad in ("0", 0, -2, "many", True, 2.5):
        with pytest.raises(ValueError, match="clips"):
            parse_clips(bad)
