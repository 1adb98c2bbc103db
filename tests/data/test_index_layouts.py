"""Indexes find the data as people unpack it: the official archives side by side, MMAction2's ``data/<dataset>``,
the reference's ``datasets/`` folder; every layout of one dataset indexes to the same list. Ambiguous finds and
indexes of nothing are errors naming what was found or looked in."""
import json
import os
import warnings

import pytest

from keras_bert3d.cli import main
from keras_bert3d.data.indexes import (MissingFilesWarning, hmdb51_index, kinetics_index, reference_frames_index,
                                       ucf101_index)

UCF = {"ApplyEyeMakeup": "ApplyEyeMakeup", "Archery": "Archery", "HandstandPushups": "HandStandPushups"}


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write("".join(line + "\r\n" for line in lines).encode())


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def ucf_lists(folder):
    write(os.path.join(folder, "classInd.txt"), [f"{i + 1} {name}" for i, name in enumerate(UCF)])
    write(os.path.join(folder, "trainlist01.txt"),
          [f"{name}/v_{name}_g{g:02d}_c01.avi {i + 1}" for i, name in enumerate(UCF) for g in (8, 9)])
    write(os.path.join(folder, "testlist01.txt"), [f"{name}/v_{name}_g01_c01.avi" for name in UCF])


def ucf_videos(folder, ext=".avi", skip=()):
    for name, disk in UCF.items():  # the disk spells HandStandPushups, the lists HandstandPushups
        for g in (1, 8, 9):
            if (name, g) not in skip:
                touch(os.path.join(folder, disk, f"v_{disk}_g{g:02d}_c01{ext}"))


def listing(index):
    return [(os.path.relpath(r.path, index.root).replace(os.sep, "/"), r.label) for r in index]


def test_ucf101_layouts_index_to_the_same_list(tmp_path):
    layouts = {}
    inside = tmp_path / "inside" / "UCF-101"  # the lists in the class root
    ucf_videos(inside)
    ucf_lists(inside / "ucfTrainTestlist")
    layouts["inside"] = (inside, inside)
    archives = tmp_path / "archives"  # UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip in one folder
    ucf_videos(archives / "UCF-101")
    ucf_lists(archives / "ucfTrainTestlist")
    layouts["archives"] = (archives, archives / "UCF-101")
    layouts["archives, class root given"] = (archives / "UCF-101", archives / "UCF-101")
    mm = tmp_path / "mmaction" / "data" / "ucf101"  # MMAction2: videos/ and annotations/
    ucf_videos(mm / "videos", ext=".mp4")  # re-encoded: the lists still say .avi
    ucf_lists(mm / "annotations")
    layouts["mmaction2"] = (mm, mm / "videos")
    layouts["mmaction2, videos given"] = (mm / "videos", mm / "videos")
    deep = tmp_path / "downloads"  # two levels above the class folders, lists elsewhere below
    ucf_videos(deep / "UCF101" / "UCF-101")
    ucf_lists(deep / "splits" / "ucfTrainTestlist")
    layouts["deeper"] = (deep, deep / "UCF101" / "UCF-101")
    results = {}
    for name, (root, expected_root) in layouts.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", MissingFilesWarning)
            for subset in ("train", "test"):
                index = ucf101_index(root, subset=subset)
                assert index.root == os.path.abspath(expected_root), name
                assert all(os.path.isfile(r.path) for r in index)
                results.setdefault(name, []).append([(os.path.splitext(p)[0], label) for p, label in listing(index)])
    first = results["inside"]
    assert len(first[0]) == 6 and len(first[1]) == 3
    assert first[0][4] == ("HandStandPushups/v_HandStandPushups_g08_c01", 2)  # the disk's spelling
    for name, result in results.items():
        assert result == first, name


def test_ucf101_ambiguous_lists_and_copies_are_errors(tmp_path):
    ucf_videos(tmp_path / "UCF-101")
    ucf_lists(tmp_path / "a" / "ucfTrainTestlist")
    ucf_lists(tmp_path / "b" / "lists")
    with pytest.raises(ValueError, match="2 places hold classInd.txt") as err:
        ucf101_index(tmp_path)
    assert str(tmp_path / "a" / "ucfTrainTestlist") in str(err.value) and str(tmp_path / "b" / "lists") in str(err.value)
    assert len(ucf101_index(tmp_path, annotations=tmp_path / "b" / "lists")) == 6  # naming one settles it
    ucf_videos(tmp_path / "copy" / "UCF-101")
    with pytest.raises(ValueError, match="2 places hold the listed UCF101 videos") as err:
        ucf101_index(tmp_path, annotations=tmp_path / "a" / "ucfTrainTestlist")
    assert str(tmp_path / "copy" / "UCF-101") in str(err.value)


def test_some_missing_warns_once_and_all_missing_is_an_error(tmp_path, capsys):
    ucf_lists(tmp_path / "ucfTrainTestlist")
    ucf_videos(tmp_path / "UCF-101", skip={("Archery", 9), ("ApplyEyeMakeup", 8)})
    with pytest.warns(MissingFilesWarning) as caught:
        index = ucf101_index(tmp_path)
    assert len(caught) == 1 and "2 of 6" in str(caught[0].message)
    assert "v_ApplyEyeMakeup_g08_c01.avi" in str(caught[0].message) and len(index) == 4
    empty = tmp_path / "elsewhere"
    ucf_lists(empty / "ucfTrainTestlist")
    os.makedirs(empty / "UCF-101" / "Archery")
    with pytest.raises(FileNotFoundError, match="none of the 6 listed entries is on disk") as err:
        ucf101_index(empty)
    assert str(empty / "UCF-101") in str(err.value) and str(empty / "ucfTrainTestlist") in str(err.value)
    assert main(["index", "ucf101", str(empty)]) != 0
    message = capsys.readouterr().err
    assert "none of the 6 listed entries" in message and "looked in" in message and str(empty) in message


def hmdb_lists(folder, classes=("brush_hair", "wave")):
    for c in classes:
        for split in (1, 2, 3):
            write(os.path.join(folder, f"{c}_test_split{split}.txt"), [f"{c}_a.avi 1", f"{c}_b.avi 2", f"{c}_c.avi 0"])


def hmdb_videos(folder, classes=("brush_hair", "wave")):
    for c in classes:
        for v in "abc":
            touch(os.path.join(folder, c, f"{c}_{v}.avi"))


def test_hmdb51_layouts_index_to_the_same_list(tmp_path):
    official = tmp_path / "official"  # hmdb51_org.rar's class folders next to test_train_splits.rar's folder
    hmdb_videos(official / "hmdb51_org")
    hmdb_lists(official / "testTrainMulti_7030_splits")
    mm = tmp_path / "data" / "hmdb51"  # MMAction2
    hmdb_videos(mm / "videos")
    hmdb_lists(mm / "annotations")
    other = tmp_path / "other"  # a split folder under a name of the user's
    hmdb_videos(other / "HMDB51")
    hmdb_lists(other / "my splits")
    results = {}
    for name, root, expected in (("official", official, official / "hmdb51_org"), ("mmaction2", mm, mm / "videos"),
                                 ("mmaction2 videos", mm / "videos", mm / "videos"),
                                 ("other", other, other / "HMDB51")):
        index = hmdb51_index(root, subset="test")
        assert index.root == os.path.abspath(expected), name
        results[name] = listing(index)
    assert results["official"] == [("brush_hair/brush_hair_b.avi", 0), ("wave/wave_b.avi", 1)]
    assert all(r == results["official"] for r in results.values())


def frames_tree(datasets, folders=("v_Archery_g01_c01", "v_Archery_g02_c01", "v_Walk_g01_c01")):
    for folder in folders:
        touch(os.path.join(datasets, "hmdb51_frames", folder, "img_00001.jpg"))
    write(os.path.join(datasets, "settings", "hmdb51", "train_rgb_split1.txt"),
          ["v_Archery_g01_c01 40 0", "v_Walk_g01_c01 30 1"])
    write(os.path.join(datasets, "settings", "hmdb51", "val_rgb_split1.txt"), ["v_Archery_g02_c01 50 0"])


def test_reference_frames_layouts(tmp_path):
    datasets = tmp_path / "datasets"  # the reference's datasets/hmdb51_frames and datasets/settings/hmdb51
    frames_tree(datasets)
    by_settings = reference_frames_index(datasets / "hmdb51_frames", datasets / "settings" / "hmdb51")
    from_above = reference_frames_index(datasets, None)  # both found below datasets/
    from_frames = reference_frames_index(datasets / "hmdb51_frames", None)  # ../settings/hmdb51
    assert listing(by_settings) == listing(from_above) == listing(from_frames) == [("v_Archery_g01_c01", 0),
                                                                                  ("v_Walk_g01_c01", 1)]
    assert from_above.root == os.path.abspath(datasets / "hmdb51_frames")
    assert [r.num_frames for r in from_above] == [40, 30]
    test = reference_frames_index(datasets, None, subset="test")
    assert listing(test) == [("v_Archery_g02_c01", 0)]
    mm = tmp_path / "data" / "hmdb51"  # MMAction2's rawframes/<class>/<video> and its list names
    for folder in ("Archery/v_Archery_g01_c01", "Walk/v_Walk_g01_c01"):
        touch(mm / "rawframes" / folder / "img_00001.jpg")
    write(mm / "hmdb51_train_split_1_rawframes.txt", ["Archery/v_Archery_g01_c01 40 0", "Walk/v_Walk_g01_c01 30 1"])
    rawframes = reference_frames_index(mm, None)
    assert rawframes.root == os.path.abspath(mm / "rawframes")
    assert [(os.path.basename(p), label) for p, label in listing(rawframes)] == listing(from_above)
    frames_tree(tmp_path / "datasets2")
    write(tmp_path / "datasets2" / "settings" / "ucf101" / "train_rgb_split1.txt", ["v_Archery_g01_c01 40 0"])
    with pytest.raises(ValueError, match="2 places hold train_rgb_split1.txt"):
        reference_frames_index(tmp_path / "datasets2", None)


def test_kinetics_layouts(tmp_path):
    rows = ["label,youtube_id,time_start,time_end,split", "abseiling,aaa,0,10,train", "air drumming,bbb,5,15,train"]
    plain = tmp_path / "k400"
    write(plain / "annotations" / "train.csv", rows)
    touch(plain / "train" / "abseiling" / "aaa_000000_000010.mp4")
    touch(plain / "train" / "air_drumming" / "bbb_000005_000015.mp4")
    mm = tmp_path / "data" / "kinetics400"  # MMAction2: videos_train/, annotations/kinetics400_train.csv
    write(mm / "annotations" / "kinetics400_train.csv", rows)
    touch(mm / "videos_train" / "abseiling" / "aaa_000000_000010.mp4")
    touch(mm / "videos_train" / "air drumming" / "bbb_000005_000015.mp4")
    above = tmp_path / "above"  # a folder above both the CSV's folder and the clips
    write(above / "kinetics" / "lists" / "train.csv", rows)
    touch(above / "kinetics" / "clips" / "abseiling" / "aaa_000000_000010.mkv")
    touch(above / "kinetics" / "clips" / "air drumming" / "bbb_000005_000015.mkv")
    results = [[(r.label, os.path.splitext(os.path.basename(r.path))[0]) for r in kinetics_index(root)]
               for root in (plain, mm, above)]
    assert results[0] == [(0, "aaa_000000_000010"), (1, "bbb_000005_000015")]
    assert results[1] == results[0] == results[2]
    assert kinetics_index(above).root == os.path.abspath(above / "kinetics" / "clips")


def test_index_json_reports_the_root_and_absolute_paths(tmp_path, capsys, monkeypatch):
    archives = tmp_path / "archives"
    ucf_videos(archives / "UCF-101")
    ucf_lists(archives / "ucfTrainTestlist")
    monkeypatch.chdir(tmp_path)
    assert main(["index", "ucf101", "archives", "--json"]) == 0  # a relative root
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    root = str(archives / "UCF-101")
    assert len(rows) == 6 and {row["root"] for row in rows} == {root}
    assert all(os.path.isabs(row["path"]) and row["path"].startswith(root + os.sep) for row in rows)
    assert f"root: {root}" in captured.err
    assert main(["index", "ucf101", "archives"]) == 0
    assert f"videos found in {root}" in capsys.readouterr().out
