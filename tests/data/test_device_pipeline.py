"""make_dataset(augment="device"): the uint8 boxes and windows it hands over, finished by ClipAugmenter, are
the host path's batches exactly (train and val, RGB and 2-channel flow, several seeds: many windows, flips and
S x S windows), the bytes per clip, and its argument errors."""
import os

import numpy as np
import pytest

from keras_bert3d.data.jpeg_frames import encode_jpeg
from keras_bert3d.data.pipeline import make_dataset
from keras_bert3d.data.records import VideoIndex, VideoRecord
from keras_bert3d.models.clip_augmenter import ClipAugmenter

# frame_size [20, 26] with crop 16: multi-scale sizes 20, 17, 15, 13 (down- and up-scaling windows);
# [16, 24]: the 1.0 ratio gives exactly S x S windows
PREP = {"modality": "rgb", "num_frames": 4, "frame_size": [20, 26], "crop_size": 16, "scale": 1 / 255,
        "mean": [0.45, 0.4, 0.35], "std": [0.225, 0.2, 0.25]}
FLOW_PREP = dict(PREP, modality="flow", frame_size=[16, 24], mean=[0.5, 0.5], std=[0.226, 0.226])


def write_folders(root, count, modality):
    """``count`` frame folders of 6 noisy frames (30 x 40), so every window's pixels differ."""
    rng = np.random.default_rng(len(modality))
    records = []
    for k in range(count):
        folder = os.path.join(root, f"{modality}{k}")
        os.makedirs(folder)
        for i in range(1, 7):
            noise = rng.integers(0, 256, (30, 40, 3 if modality == "rgb" else 2), np.uint8)
            names = [f"img_{i:05d}.jpg"] if modality == "rgb" else [f"flow_x_{i:05d}.jpg", f"flow_y_{i:05d}.jpg"]
            images = [noise] if modality == "rgb" else [noise[..., 0], noise[..., 1]]
            for name, image in zip(names, images):
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(encode_jpeg(image, quality=90))
        records.append(VideoRecord(folder, k % 2, f"c{k % 2}", 6))
    return VideoIndex(records, ["c0", "c1"], source="frames")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("device"))
    return {"rgb": write_folders(root, 6, "rgb"), "flow": write_folders(root, 4, "flow")}


def batches(index, prep, mode, augment, seed):
    dataset = make_dataset(index, prep, mode, batch_size=3, seed=seed, augment=augment).dataset
    return [(x, y.numpy()) for x, y in dataset]


@pytest.mark.parametrize("modality,prep", [("rgb", PREP), ("flow", FLOW_PREP)])
def test_device_batches_equal_the_host_batches(indexes, modality, prep):
    augmenter = ClipAugmenter.from_preprocessing(prep)
    size = prep["crop_size"]

    def compare(mode, seed):
        host = batches(indexes[modality], prep, mode, "host", seed)
        device = batches(indexes[modality], prep, mode, "device", seed)
        assert len(host) == len(device) > 1
        for (clips, labels), (inputs, device_labels) in zip(host, device):
            assert inputs["frames"].dtype == "uint8" and inputs["windows"].dtype == "int32"
            assert np.array_equal(labels, device_labels)
            assert np.array_equal(np.asarray(augmenter(inputs)), clips.numpy())
        return np.concatenate([inputs["windows"].numpy() for inputs, _ in device])

    windows = np.concatenate([compare("train", seed) for seed in (0, 1, 2, 3)])
    assert set(windows[:, 4]) == {0, 1} and len({tuple(w[:4]) for w in windows}) > 6  # flips, many windows
    if min(prep["frame_size"]) == size:  # the 1.0 ratio: S x S windows in train too (1 draw in 10 per clip; the
        seed = 4  # draws follow TF's global seed, which other tests set: more seeds until one comes)
        while not any((w[2], w[3]) == (size, size) for w in windows) and seed < 40:
            windows, seed = compare("train", seed), seed + 1
        assert any((w[2], w[3]) == (size, size) for w in windows)
    val = compare("val", None)
    assert np.array_equal(val, [[0, 0, size, size, 0]] * len(indexes[modality]))


def _bytes(spec):
    return int(np.prod(spec.shape[1:])) * spec.dtype.size


def test_bytes_per_clip(indexes):
    """uint8 boxes instead of float32 clips: 4 S^2 / min(H, W)^2 fewer bytes in train, 4x in val."""
    base, size = min(PREP["frame_size"]), PREP["crop_size"]
    for mode, ratio in (("train", 4 * size ** 2 / base ** 2), ("val", 4.0)):
        host = make_dataset(indexes["rgb"], PREP, mode, augment="host").dataset.element_spec[0]
        device = make_dataset(indexes["rgb"], PREP, mode, augment="device").dataset.element_spec[0]
        box = base if mode == "train" else size
        assert device["frames"].shape[1:] == (PREP["num_frames"], box, box, 3)
        assert _bytes(host) / _bytes(device["frames"]) == pytest.approx(ratio)
        assert _bytes(device["windows"]) == 20
    for frame_size, crop in (([128, 171], 112), ([256, 340], 224)):  # the presets' sizes: 3.06x in train
        assert 4 * crop ** 2 / min(frame_size) ** 2 == pytest.approx(3.0625)


def test_argument_errors(indexes):
    for kwargs, match in [(dict(augment="gpu"), "augment='gpu'"),
                          (dict(augment="device", mode="test"), "mode='test'"),
                          (dict(augment="device", mixup=0.2), "mixup=0.2")]:
        with pytest.raises(ValueError, match=match):
            make_dataset(indexes["rgb"], PREP, **kwargs)
