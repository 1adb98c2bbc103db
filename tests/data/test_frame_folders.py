"""The reference's frame-folder layout: img_%05d.jpg, flow_x/flow_y with or without .jpg, 1-based files."""
import os

import pytest

from keras_bert3d.data.frame_folders import count_frames, file_templates, flow_extension, frame_files
from keras_bert3d.data.video_reader import VideoDecodeError

NUM = 7


def make_folder(path, rgb=True, flow_ext=None, num=NUM):
    path.mkdir()
    for number in range(1, num + 1):
        if rgb:
            (path / f"img_{number:05d}.jpg").write_bytes(b"\xff\xd8jpeg")
        if flow_ext is not None:
            for axis in "xy":
                (path / f"flow_{axis}_{number:05d}{flow_ext}").write_bytes(b"\xff\xd8jpeg")
    (path / "notes.txt").write_text("not a frame")
    return path


def test_rgb_indices_are_zero_based_files_one_based(tmp_path):
    folder = make_folder(tmp_path / "v_Run_g01_c01")
    assert count_frames(folder) == NUM
    paths = frame_files(folder, [0, 6, 3, 3])
    assert [os.path.basename(p) for p in paths] == ["img_00001.jpg", "img_00007.jpg", "img_00004.jpg", "img_00004.jpg"]
    assert all(os.path.isfile(p) for p in paths)
    assert file_templates(folder) == (os.path.join(folder, "img_%05d.jpg"),)


@pytest.mark.parametrize("ext", [".jpg", ""], ids=["ucf101_jpg", "hmdb51_no_extension"])
def test_flow_pairs_and_detected_extension(tmp_path, ext):
    folder = make_folder(tmp_path / "video", rgb=False, flow_ext=ext)
    assert flow_extension(folder) == ext
    assert count_frames(folder, "flow") == NUM  # counted from flow_x, as the reference does
    pairs = frame_files(folder, [2, 0], "flow")
    assert [tuple(os.path.basename(p) for p in pair) for pair in pairs] == [
        (f"flow_x_00003{ext}", f"flow_y_00003{ext}"), (f"flow_x_00001{ext}", f"flow_y_00001{ext}")]
    with pytest.raises(VideoDecodeError, match="has no rgb frames"):
        count_frames(folder, "rgb")


def test_flow_extension_found_when_the_first_file_is_gone(tmp_path):
    folder = make_folder(tmp_path / "video", rgb=False, flow_ext="")
    os.remove(folder / "flow_x_00001")
    assert flow_extension(folder) == ""


def test_too_few_frames(tmp_path):
    folder = make_folder(tmp_path / "short")
    with pytest.raises(VideoDecodeError, match=f"has {NUM} frames, clip needs index {NUM}"):
        frame_files(folder, [0, NUM])
    with pytest.raises(VideoDecodeError, match="has 5 frames, clip needs index 5"):
        frame_files(folder, [5], num_frames=5)  # the split file's count, trusted without listing
    assert len(frame_files(folder, [NUM - 1], num_frames=NUM)) == 1


def test_missing_folder_and_bad_arguments(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing") as info:
        count_frames(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)
    folder = make_folder(tmp_path / "video")
    with pytest.raises(ValueError, match="modality='depth'"):
        frame_files(folder, [0], "depth")
    with pytest.raises(ValueError, match=r"received \[-1\]"):
        frame_files(folder, [-1])
    assert frame_files(folder, []) == []


def test_a_layout_for_each_modality_of_the_preprocessing():
    from keras_bert3d.data import frame_folders
    from keras_bert3d.models.video_preprocessor import MODALITIES

    assert tuple(frame_folders.FRAME_LAYOUTS) == MODALITIES
    assert [frame_folders.check_modality(m) for m in MODALITIES] == list(MODALITIES)
