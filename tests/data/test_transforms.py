"""Clip transforms against the rules of REFERENCE.md 5.8, 5.9 and 5.12 (hand-computed from the text)."""
import numpy as np
import pytest
import tensorflow as tf

from keras_bert3d.data import transforms

# REFERENCE.md 5.8, written out by hand from the text.
SIZES = {128: [128, 112, 96, 84], 256: [256, 224, 192, 168]}
STEPS = {(128, 170, 112): (4, 14), (256, 340, 224): (8, 29)}
GRID = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4), (1, 1), (1, 3), (3, 1), (3, 3)]
PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (3, 3)]  # |i - j| <= 1
CASES = [(128, 170, 112), (256, 340, 224)]


def index_image(height, width):
    """One float frame whose pixel (y, x) holds y * 1000 + x, so a crop tells where it came from."""
    return (np.arange(height)[:, None] * 1000 + np.arange(width)[None, :]).astype(np.float32)


@pytest.mark.parametrize("base", [128, 256])
def test_crop_size_pairs(base):
    sizes = SIZES[base]
    assert transforms.crop_size_pairs(base) == [(sizes[i], sizes[j]) for i, j in PAIRS]


@pytest.mark.parametrize("height,width,size", CASES)
def test_fixed_offsets(height, width, size):
    h_step, w_step = STEPS[(height, width, size)]
    assert transforms.fixed_crop_offsets(height, width, size) == [(r * h_step, c * w_step) for r, c in GRID]


@pytest.mark.parametrize("height,width,size", CASES)
def test_all_windows_match_numpy_slicing(height, width, size):
    """13 positions x 10 size pairs: the window is what the reference's NumPy slice cuts."""
    h_step, w_step = STEPS[(height, width, size)]
    sizes = SIZES[min(height, width)]
    image = index_image(height, width)
    for pair_index, (i, j) in enumerate(PAIRS):
        for offset_index, (r, c) in enumerate(GRID):
            y, x = r * h_step, c * w_step
            ref = image[y:y + sizes[i], x:x + sizes[j]]  # crop_img = cur_img[h_off:h_off+crop_h, w_off:w_off+crop_w]
            window = [int(v) for v in transforms.crop_window(height, width, size, pair_index, offset_index)]
            assert window[:2] == [int(ref[0, 0]) // 1000, int(ref[0, 0]) % 1000]
            assert window[2:] == list(ref.shape), (pair_index, offset_index)


def test_clipping_at_the_border_happens():
    # 128 rows from row 16 of a 128-row frame: only 112 remain; 128 columns from column 56 of 170: 114 remain.
    assert [int(v) for v in transforms.crop_window(128, 170, 112, 0, 3)] == [16, 56, 112, 114]


def candidate_outputs(clip, size):
    """Every output multi_scale_crop may give for this clip, with its window."""
    height, width = clip.shape[1:3]
    out = {}
    for pair_index in range(10):
        for offset_index in range(13):
            y, x, h, w = (int(v) for v in transforms.crop_window(height, width, size, pair_index, offset_index))
            crop = clip[:, y:y + h, x:x + w]
            out[(y, x, h, w)] = tf.image.resize(crop, [size, size], method="bilinear").numpy()
    return out


def test_multi_scale_crop_picks_reference_windows_for_whole_clip():
    height, width, size = 24, 34, 16  # h_step 2, w_step 4; sizes 24, 21, 18, 15
    base = index_image(height, width)
    clip = np.stack([base, base + 0.25, base + 0.5])[..., None]  # 3 frames that differ by a constant
    candidates = candidate_outputs(clip, size)
    dataset = tf.data.Dataset.range(300).map(
        lambda i: transforms.multi_scale_crop(tf.constant(clip), size, seed=tf.stack([i, 7])))
    positions = set()
    for out in dataset.as_numpy_iterator():
        assert out.shape == (3, size, size, 1)
        np.testing.assert_allclose(out[1] - out[0], 0.25, atol=1e-3)  # the same crop on every frame
        np.testing.assert_allclose(out[2] - out[0], 0.5, atol=1e-3)
        match = [key for key, ref in candidates.items() if np.allclose(ref, out, atol=1e-3)]
        assert match, "output is no reference crop"
        positions.add(match[0][:2])
    assert positions == set(transforms.fixed_crop_offsets(height, width, size))


def test_multi_scale_crop_uint8_and_unknown_shapes():
    clip = np.random.default_rng(0).integers(0, 256, (2, 30, 40, 3)).astype(np.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def crop(c):
        return transforms.multi_scale_crop(c, 16, seed=[1, 2])

    out = crop(tf.constant(clip))
    assert out.dtype == tf.uint8 and tuple(out.shape) == (2, 16, 16, 3)
    np.testing.assert_array_equal(out.numpy(), crop(tf.constant(clip)).numpy())  # stateless: same seed, same crop


def test_random_flip_whole_clip_and_flow_not_negated():
    clip = np.stack([index_image(4, 6), index_image(4, 6) + 0.5])[..., None].repeat(2, -1)  # flow-like, 2 channels
    seen = set()
    for s in range(40):
        out = transforms.random_flip(tf.constant(clip), seed=[s, 0]).numpy()
        if np.array_equal(out, clip):
            seen.add("same")
        else:
            np.testing.assert_array_equal(out, clip[:, :, ::-1])  # every frame, x values kept as they are
            seen.add("flipped")
    assert seen == {"same", "flipped"}


def test_random_flip_mirrors_uint8_clips_of_any_shape_as_reverse_does():
    clip = np.random.default_rng(6).integers(0, 256, (3, 5, 7, 3)).astype(np.uint8)
    out = transforms.random_flip(tf.constant(clip), seed=[0, 0], probability=1.0)
    assert out.shape == clip.shape
    np.testing.assert_array_equal(out.numpy(), clip[:, :, ::-1])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def unknown_shape(frames):
        return transforms.random_flip(frames, seed=[0, 0], probability=1.0)

    np.testing.assert_array_equal(unknown_shape(tf.constant(clip)).numpy(), clip[:, :, ::-1])


@pytest.mark.parametrize("height,width,size,expected", [
    (128, 170, 112, (8, 29)), (256, 340, 224, (16, 58)),   # REFERENCE.md 5.9
    (17, 13, 12, (2, 0)),  # round(2.5) = 2 (half to even, Python 3)
    (15, 15, 12, (2, 2)),  # round(1.5) = 2
    (13, 14, 12, (0, 1)),  # round(0.5) = 0
])
def test_center_crop_offsets(height, width, size, expected):
    image = index_image(height, width)[None, ..., None]
    out = transforms.center_crop(tf.constant(image), size).numpy()
    assert out.shape == (1, size, size, 1)
    assert (int(out[0, 0, 0, 0]) // 1000, int(out[0, 0, 0, 0]) % 1000) == expected
    # a graph that does not know the frame size takes the same window (crop_offsets at run time)
    unknown = tf.function(lambda c: transforms.multi_crops(c, size, 1),
                          input_signature=[tf.TensorSpec([None, None, None, 1], image.dtype)])
    np.testing.assert_array_equal(unknown(tf.constant(image)).numpy()[0], out)


def test_ten_crops_reference_order():
    height, width, size = 16, 22, 12
    img = index_image(height, width)
    flip = img[:, ::-1]
    cy, cx = round((height - size) / 2), round((width - size) / 2)
    # VideoSpatialPrediction3D.py: imageList1..10
    expected = [img[cy:cy + size, cx:cx + size], img[:size, :size], img[:size, -size:], img[-size:, :size],
                img[-size:, -size:], flip[cy:cy + size, cx:cx + size], flip[:size, :size], flip[:size, -size:],
                flip[-size:, :size], flip[-size:, -size:]]
    clip = np.stack([img, img])[..., None]
    out = transforms.multi_crops(tf.constant(clip), size, 10).numpy()
    assert out.shape == (10, 2, size, size, 1)
    for k in range(10):
        np.testing.assert_array_equal(out[k, 1, ..., 0], expected[k])


@pytest.mark.parametrize("height,width", [(16, 30), (30, 16)])
def test_three_crops_along_long_side(height, width):
    size = 12
    img = index_image(height, width)
    out = transforms.multi_crops(tf.constant(img[None, ..., None]), size, 3).numpy()[:, 0, ..., 0]
    cy, cx = round((height - size) / 2), round((width - size) / 2)
    if width > height:
        starts = [(cy, 0), (cy, cx), (cy, width - size)]
    else:
        starts = [(0, cx), (cy, cx), (height - size, cx)]
    for crop, (y, x) in zip(out, starts):
        np.testing.assert_array_equal(crop, img[y:y + size, x:x + size])
    one = transforms.multi_crops(tf.constant(img[None, ..., None]), size, 1).numpy()
    np.testing.assert_array_equal(one[0], transforms.center_crop(tf.constant(img[None, ..., None]), size).numpy())
    with pytest.raises(ValueError, match="num_crops=5"):
        transforms.multi_crops(tf.constant(img[None, ..., None]), size, 5)


def test_resize_uint8_like_opencv():
    from keras_bert3d.data.jpeg_frames import resize_bilinear  # NumPy INTER_LINEAR (part B)

    clip = np.random.default_rng(3).integers(0, 256, (2, 24, 32, 3)).astype(np.uint8)
    for size in ([12, 17], [40, 50]):
        out = transforms.resize(tf.constant(clip), size).numpy()
        assert out.dtype == np.uint8 and out.shape == (2, *size, 3)
        assert np.abs(out.astype(int) - resize_bilinear(clip, size).astype(int)).max() <= 1


def test_resize_gives_the_rounded_clipped_bilinear_frames_and_passes_same_size_frames_through():
    clip = np.random.default_rng(5).integers(0, 256, (3, 24, 32, 3)).astype(np.uint8)
    clip[0, :4] = 255  # flat extremes: the rounding must not wrap
    clip[1, :4] = 0

    def before(frames, size):  # the rule as first written: float bilinear, round, clip, cast
        out = tf.image.resize(frames, size, method="bilinear", antialias=False)
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8).numpy()

    for size in ([12, 17], [40, 50], [24, 20]):
        np.testing.assert_array_equal(transforms.resize(tf.constant(clip), size).numpy(), before(clip, size))
    np.testing.assert_array_equal(before(clip, [24, 32]), clip)  # the rule is the identity at the same size
    np.testing.assert_array_equal(transforms.resize(tf.constant(clip), [24, 32]).numpy(), clip)
    floats = clip.astype(np.float32) / 7.0
    np.testing.assert_array_equal(transforms.resize(tf.constant(floats), [12, 17]).numpy(),
                                  tf.image.resize(floats, [12, 17], antialias=False).numpy())

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def unknown_size(frames):  # run-time check: the decoded size is unknown when the graph is built
        out = transforms.resize(frames, [24, 32])
        assert out.shape.as_list() == [None, 24, 32, 3]
        return out

    np.testing.assert_array_equal(unknown_size(tf.constant(clip)).numpy(), clip)
    np.testing.assert_array_equal(unknown_size(tf.constant(clip[:, :12, :16])).numpy(), before(clip[:, :12, :16],
                                                                                                [24, 32]))


def test_normalize():
    from keras_bert3d.models.builder import get_preset

    prep = get_preset("rgb_r2plus1d_32f_34_bert10")["preprocessing"]
    clip = tf.constant(np.array([0, 255], np.uint8).reshape(2, 1, 1, 1).repeat(3, -1))
    out = transforms.normalize(clip, prep).numpy()
    mean, std = np.array(prep["mean"]), np.array(prep["std"])
    np.testing.assert_allclose(out[0, 0, 0], -mean / std, rtol=1e-5)
    np.testing.assert_allclose(out[1, 0, 0], (1.0 - mean) / std, rtol=1e-5)
    flow = get_preset("flow_I3D64f_bert2")["preprocessing"]
    np.testing.assert_allclose(transforms.normalize(clip[..., :2], flow).numpy()[:, 0, 0, 0], [-1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        transforms.normalize(clip, flow)


def test_mixup_and_cutmix():
    rng = np.random.default_rng(4)
    clips = tf.constant(rng.random((4, 2, 8, 10, 3)), tf.float32)
    labels = tf.one_hot([0, 1, 2, 1], 3)
    mixed, soft = transforms.mixup(clips, labels, alpha=0.4, seed=[5, 6])
    lam = float(soft[0, 0])  # clip 0 (class 0) is mixed with clip 3 (class 1)
    np.testing.assert_allclose(mixed.numpy(), lam * clips.numpy() + (1 - lam) * clips.numpy()[::-1], atol=1e-5)
    np.testing.assert_allclose(soft.numpy().sum(-1), 1.0, atol=1e-6)
    again, _ = transforms.mixup(clips, labels, alpha=0.4, seed=[5, 6])
    np.testing.assert_array_equal(mixed.numpy(), again.numpy())

    for seed in range(5):
        mixed, soft = transforms.cutmix(clips, labels, alpha=1.0, seed=[seed, 1])
        mixed = mixed.numpy()
        pasted = np.all(np.isclose(mixed, clips.numpy()[::-1]), axis=-1) & ~np.all(
            np.isclose(mixed, clips.numpy()), axis=-1)
        np.testing.assert_array_equal(pasted[0, 0], pasted[0, 1])  # same box on every frame
        fraction = pasted[0, 0].mean()
        np.testing.assert_allclose(float(soft[0, 0]), 1 - fraction, atol=1e-6)
        np.testing.assert_allclose(float(soft[0, 1]), fraction, atol=1e-6)
    with pytest.raises(ValueError, match="alpha=0"):
        transforms.mixup(clips, labels, alpha=0)
