"""Dataset indexes on small trees written in the official formats (videos are empty placeholder files: an index
only lists them; decoding is tested with the readers)."""
import contextlib
import json
import os
import warnings

import pytest

from keras_bert3d.data.indexes import (DATASETS, MissingFilesWarning, build_index, class_folder_index, csv_index,
                                       hmdb51_index, kinetics_index, reference_frames_index, ucf101_index)


def write(path, lines, crlf=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write("".join(line + ("\r\n" if crlf else "\n") for line in lines).encode())
    return str(path)


def touch(*paths):
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()


@contextlib.contextmanager
def no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingFilesWarning)
        yield


# ---------------------------------------------------------------- UCF101
UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]


def ucf_tree(tmp_path, annotations="ucfTrainTestlist"):
    root = tmp_path / "UCF-101"
    disk = {"ApplyEyeMakeup": "ApplyEyeMakeup", "Archery": "Archery", "HandstandPushups": "HandStandPushups"}
    for cls, folder in disk.items():
        for group in ("g01", "g08"):
            touch(root / folder / f"v_{folder}_{group}_c01.avi")
    ann = os.path.normpath(root / annotations)
    write(os.path.join(ann, "classInd.txt"), [f"{i + 1} {n}" for i, n in enumerate(UCF_CLASSES)], crlf=True)
    write(os.path.join(ann, "trainlist01.txt"), [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "Archery/v_Archery_g08_c01.avi 2",
        "HandstandPushups/v_HandstandPushups_g08_c01.avi 3", "Archery/v_Archery_g09_c01.avi 2"], crlf=True)
    write(os.path.join(ann, "testlist01.txt"), [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g01_c01.avi",
        "HandstandPushups/v_HandStandPushups_g01_c01.avi"], crlf=True)
    write(os.path.join(ann, "trainlist02.txt"), ["Archery/v_Archery_g01_c01.avi 2"], crlf=True)
    write(os.path.join(ann, "testlist02.txt"), ["Archery/v_Archery_g08_c01.avi"], crlf=True)
    return root, ann


def test_ucf101_train_labels_case_fallback_and_missing(tmp_path):
    root, ann = ucf_tree(tmp_path)
    with open(os.path.join(ann, "trainlist01.txt"), "rb") as f:
        assert f.read().count(b"\r\n") == 4  # the official CRLF line ends
    with pytest.warns(MissingFilesWarning) as caught:
        index = ucf101_index(root, split=1, subset="train")
    assert len([w for w in caught if w.category is MissingFilesWarning]) == 1
    message = str(caught[0].message)
    assert "1 of 4" in message and "v_Archery_g09_c01.avi" in message
    assert index.class_names == UCF_CLASSES and index.source == "video"
    assert [(r.label, r.class_name) for r in index] == [(0, "ApplyEyeMakeup"), (1, "Archery"), (2, "HandstandPushups")]
    # the list says HandstandPushups/v_HandstandPushups_..., the disk HandStandPushups/v_HandStandPushups_...
    assert index.records[2].path == os.path.join(root, "HandStandPushups", "v_HandStandPushups_g08_c01.avi")
    assert all(os.path.isfile(r.path) and "\r" not in r.path for r in index)
    assert index.missing == [os.path.join(root, "Archery/v_Archery_g09_c01.avi")]


def test_ucf101_test_labels_come_from_the_class_folder(tmp_path):
    root, _ = ucf_tree(tmp_path)
    with no_warning():
        index = ucf101_index(root, subset="test")
    assert [r.label for r in index] == [0, 1, 2] and index.missing == []
    assert [os.path.basename(r.path) for r in index] == [
        "v_ApplyEyeMakeup_g01_c01.avi", "v_Archery_g01_c01.avi", "v_HandStandPushups_g01_c01.avi"]
    assert ucf101_index(root, subset="val").to_json() == index.to_json()  # the reference's name for test
    split2 = ucf101_index(root, split=2, subset="test")
    assert [(os.path.basename(r.path), r.label) for r in split2] == [("v_Archery_g08_c01.avi", 1)]


def test_ucf101_annotation_places(tmp_path):
    root, ann = ucf_tree(tmp_path, annotations="../ucfTrainTestlist")  # next to UCF-101, the archive layout
    assert ann == os.path.join(tmp_path, "ucfTrainTestlist")
    with pytest.warns(MissingFilesWarning):
        default = ucf101_index(root)
    with pytest.warns(MissingFilesWarning):
        given = ucf101_index(root, annotations=os.path.join(ann, "classInd.txt"))
    assert len(default) == len(given) == 3
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        ucf101_index(root, annotations=root)


def test_ucf101_errors_name_the_argument_or_file_and_line(tmp_path):
    root, ann = ucf_tree(tmp_path)
    with pytest.raises(ValueError, match="split=4"):
        ucf101_index(root, split=4)
    with pytest.raises(ValueError, match="subset='dev'"):
        ucf101_index(root, subset="dev")
    write(os.path.join(ann, "trainlist03.txt"), ["Archery/v_Archery_g01_c01.avi 2", "Archery/v_Archery_g08_c01.avi"],
          crlf=True)
    with pytest.raises(ValueError, match=r"trainlist03.txt, line 2"):
        ucf101_index(root, split=3)
    write(os.path.join(ann, "trainlist03.txt"), ["Archery/v_Archery_g01_c01.avi 1"], crlf=True)
    with pytest.raises(ValueError, match=r"line 1: label 1 \(ApplyEyeMakeup\) contradicts"):
        ucf101_index(root, split=3)
    write(os.path.join(ann, "testlist03.txt"), ["Unknown/v_Unknown_g01_c01.avi"], crlf=True)
    with pytest.raises(ValueError, match=r"testlist03.txt, line 1: the class folder"):
        ucf101_index(root, split=3, subset="test")
    write(os.path.join(ann, "classInd.txt"), ["1 ApplyEyeMakeup", "3 Archery"], crlf=True)
    with pytest.raises(ValueError, match="classInd.txt: class indices must be 1..2"):
        ucf101_index(root)


# ---------------------------------------------------------------- HMDB51
HMDB_SPLITS = {  # class -> [(video, split1 mark, split2 mark)]
    "wave": [("21_wave_u_cm_np1_fr_goo_0.avi", 1, 2), ("Wave_hi_wave_h_nm_np1_le_med_1.avi", 2, 1)],
    "brush_hair": [("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 1, 1),
                   ("Brushing_Hair_brush_hair_h_cm_np2_le_goo_1.avi", 2, 0),
                   ("Silky_brush_hair_u_nm_np1_fr_med_2.avi", 0, 2)],
    "cartwheel": [("Cartwheel_Tutorial_cartwheel_f_cm_np1_ri_med_0.avi", 1, 2),
                  ("lost_cartwheel_f_nm_np1_le_bad_3.avi", 2, 1)],
}


def hmdb_tree(tmp_path, skip=("lost_cartwheel_f_nm_np1_le_bad_3.avi",)):
    root, ann = tmp_path / "hmdb51", tmp_path / "hmdb51" / "testTrainMulti_7030_splits"
    for cls, videos in HMDB_SPLITS.items():
        for split in (1, 2, 3):
            write(ann / f"{cls}_test_split{split}.txt", [f"{v} {marks[min(split, 2) - 1]} " for v, *marks in videos])
        touch(*[root / cls / v for v, *_ in videos if v not in skip])
    return root, ann


def test_hmdb51_subsets_sorted_classes_and_missing(tmp_path):
    root, _ = hmdb_tree(tmp_path)
    with no_warning():
        train = hmdb51_index(root, split=1, subset="train")
    assert train.class_names == ["brush_hair", "cartwheel", "wave"]  # sorted, whatever the file order
    assert [(os.path.basename(r.path), r.label, r.class_name) for r in train] == [
        ("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0, "brush_hair"),
        ("Cartwheel_Tutorial_cartwheel_f_cm_np1_ri_med_0.avi", 1, "cartwheel"),
        ("21_wave_u_cm_np1_fr_goo_0.avi", 2, "wave")]
    with pytest.warns(MissingFilesWarning, match="1 of 3"):
        test = hmdb51_index(root, split=1, subset="test")
    assert [r.label for r in test] == [0, 2]  # Silky_... is marked 0 (unused) in split 1
    assert test.missing == [os.path.join(root, "cartwheel", "lost_cartwheel_f_nm_np1_le_bad_3.avi")]
    with pytest.warns(MissingFilesWarning):
        split2 = hmdb51_index(root, split=2, subset="train")
    assert sorted(os.path.basename(r.path)[:6] for r in split2) == ["April_", "Wave_h"]


def test_hmdb51_errors(tmp_path):
    root, ann = hmdb_tree(tmp_path)
    with pytest.raises(ValueError, match="split=0"):
        hmdb51_index(root, split=0)
    with pytest.raises(ValueError, match="subset='unused'"):
        hmdb51_index(root, subset="unused")
    write(ann / "wave_test_split3.txt", ["21_wave_u_cm_np1_fr_goo_0.avi 1", "Wave_hi_wave_h_nm_np1_le_med_1.avi 3"])
    with pytest.raises(ValueError, match=r"wave_test_split3.txt, line 2: expected '<video>.avi <0\|1\|2>'"):
        hmdb51_index(root, split=3)
    os.remove(ann / "cartwheel_test_split2.txt")
    with pytest.raises(FileNotFoundError, match="cartwheel_test_split2.txt"):
        hmdb51_index(root, split=2)


# ---------------------------------------------------------------- Kinetics
K_HEADER = "label,youtube_id,time_start,time_end,split,is_cc"
K_ROWS = [("air drumming", "-VtLx-mcPds", 0, 10, "train"), ("abseiling", "0347ZoDXyP0", 15, 25, "train"),
          ('"passing American football (in game)"', "35LxjHZA8l4", 31, 41, "train"),
          ("abseiling", "3caPS4FHFF8", 36, 46, "train"), ("abseiling", "-3B32lodo2M", 59, 69, "val")]


def kinetics_tree(tmp_path):
    root = tmp_path / "k400"
    rows = [f"{label},{yid},{start},{end},{split},0" for label, yid, start, end, split in K_ROWS]
    csv_path = write(root / "annotations" / "train.csv", [K_HEADER] + rows)
    touch(root / "air_drumming" / "-VtLx-mcPds_000000_000010.mp4",  # underscores for spaces
          root / "abseiling" / "0347ZoDXyP0_000015_000025.mp4",
          root / "train" / "passing American football (in game)" / "35LxjHZA8l4_000031_000041.mkv",  # split folder
          root / "abseiling" / "-3B32lodo2M_000059_000069.mp4")
    return root, csv_path


def test_kinetics_layouts_sorted_classes_and_missing(tmp_path):
    root, csv_path = kinetics_tree(tmp_path)
    with pytest.warns(MissingFilesWarning, match="1 of 4") as caught:
        index = kinetics_index(root, csv_path, subset="train")
    assert len(caught) == 1
    assert index.class_names == ["abseiling", "air drumming", "passing American football (in game)"]
    assert [(r.label, os.path.relpath(r.path, root)) for r in index] == [
        (1, os.path.join("air_drumming", "-VtLx-mcPds_000000_000010.mp4")),
        (0, os.path.join("abseiling", "0347ZoDXyP0_000015_000025.mp4")),
        (2, os.path.join("train", "passing American football (in game)", "35LxjHZA8l4_000031_000041.mkv"))]
    assert index.missing == [os.path.join(root, "abseiling", "3caPS4FHFF8_000036_000046.mp4")]
    with pytest.warns(MissingFilesWarning):
        default = kinetics_index(root)  # ROOT/annotations/train.csv
    assert default.to_json() == index.to_json()
    val = kinetics_index(root, csv_path, subset="val", classes=csv_path)
    assert [(r.label, r.class_name) for r in val] == [(0, "abseiling")] and val.num_classes == 3
    assert kinetics_index(root, csv_path, subset="val").class_names == ["abseiling"]  # this CSV's own labels


def test_kinetics_test_csv_without_labels(tmp_path):
    root = tmp_path / "k700"
    csv_path = write(root / "test.csv", ["youtube_id,time_start,time_end,split", "aaa,1,11,test", "bbb,2,12,test"],
                     crlf=True)
    touch(root / "test" / "aaa_000001_000011.mp4")
    with pytest.warns(MissingFilesWarning, match="1 of 2"):
        index = kinetics_index(root, csv_path, subset="test", classes=["x", "y"])
    assert [(r.label, r.class_name, os.path.basename(r.path)) for r in index] == [(-1, "", "aaa_000001_000011.mp4")]
    assert index.class_names == ["x", "y"] and index.missing == [os.path.join(root, "bbb_000002_000012.mp4")]


def test_kinetics_errors(tmp_path):
    root, csv_path = kinetics_tree(tmp_path)
    with pytest.raises(ValueError, match="subset='validate'"):
        kinetics_index(root, csv_path, subset="validate")
    with pytest.raises(ValueError, match=r"no row of split 'test' \(splits present: train, val\)"):
        kinetics_index(root, csv_path, subset="test")
    bad = write(tmp_path / "bad.csv", ["label,youtube_id,start,end"])
    with pytest.raises(ValueError, match=r"bad.csv, line 1: the header lacks time_start, time_end"):
        kinetics_index(root, bad)
    bad = write(tmp_path / "bad.csv", [K_HEADER, "abseiling,x,1,11,train,0", "abseiling,y,one,11,train,0"])
    with pytest.raises(ValueError, match="bad.csv, line 3: time_start/time_end must be numbers"):
        kinetics_index(root, bad)
    with pytest.raises(ValueError, match="train.csv, line 2: label 'air drumming' is not one of the classes"):
        kinetics_index(root, csv_path, classes=["zumba"])
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        kinetics_index(root, tmp_path / "nope.csv")


# ---------------------------------------------------------------- reference frame folders
def frames_tree(tmp_path, flow_ext=".jpg"):
    root, settings = tmp_path / "ucf101_frames", tmp_path / "settings" / "ucf101"
    for folder in ("v_ApplyEyeMakeup_g08_c01", "v_Archery_g01_c01", "v_Archery_g08_c01"):
        touch(root / folder / "img_00001.jpg", root / folder / f"flow_x_00001{flow_ext}",
              root / folder / f"flow_y_00001{flow_ext}")
    for modality in ("rgb", "flow"):
        write(settings / f"train_{modality}_split1.txt",
              ["v_ApplyEyeMakeup_g08_c01 120 0", "v_Archery_g08_c01 98 1", "v_Archery_g09_c01 77 1"], crlf=True)
        write(settings / f"val_{modality}_split1.txt", ["v_Archery_g01_c01 101 1"], crlf=True)
    return root, settings


def test_reference_frames_counts_labels_and_missing(tmp_path):
    root, settings = frames_tree(tmp_path)
    with pytest.warns(MissingFilesWarning, match="1 of 3"):
        index = reference_frames_index(root, settings / "train_rgb_split1.txt")
    assert index.source == "frames" and index.class_names == ["class_0", "class_1"]
    assert [(os.path.basename(r.path), r.num_frames, r.label) for r in index] == [
        ("v_ApplyEyeMakeup_g08_c01", 120, 0), ("v_Archery_g08_c01", 98, 1)]
    assert index.missing == [os.path.join(root, "v_Archery_g09_c01")]
    write(settings / "classInd.txt", ["1 ApplyEyeMakeup", "2 Archery"], crlf=True)  # found next to the split file
    with no_warning():
        test = reference_frames_index(root, settings, "flow", split=1, subset="test")  # -> val_flow_split1.txt
    assert [(r.class_name, r.num_frames) for r in test] == [("Archery", 101)]
    named = reference_frames_index(root, settings, "flow", subset="test", classes=["a", "b", "c"])
    assert named.class_names == ["a", "b", "c"] and named.records[0].class_name == "b"


def test_reference_frames_errors(tmp_path):
    root, settings = frames_tree(tmp_path, flow_ext="")
    with pytest.raises(ValueError, match="modality='depth'"):
        reference_frames_index(root, settings, "depth")
    with pytest.raises(FileNotFoundError, match="no train_flow_split3.txt"):
        reference_frames_index(root, None, "flow", split=3)  # looked for below ROOT and in ../settings
    with pytest.raises(FileNotFoundError, match="train_flow_split2.txt"):
        reference_frames_index(root, settings, "flow", split=2)
    bad = write(settings / "bad.txt", ["v_Archery_g01_c01 101 1", "v_Archery_g08_c01 many 1"])
    with pytest.raises(ValueError, match=r"bad.txt, line 2: expected '<folder> <num_frames> <label>'"):
        reference_frames_index(root, bad)
    with pytest.raises(ValueError, match=r"bad2.txt, line 1: label 1 but only 1 classes"):
        reference_frames_index(root, write(settings / "bad2.txt", ["v_Archery_g01_c01 101 1"]), classes=["a"])


# ---------------------------------------------------------------- class folders and CSV
def test_class_folders_videos(tmp_path):
    root = tmp_path / "mine"
    touch(root / "walk" / "b.MP4", root / "walk" / "a.webm", root / "walk" / "notes.txt", root / "run" / "x.mkv",
          root / "run" / "y.mov", root / "run" / ".hidden.mp4", root / ".cache" / "z.mp4")
    os.makedirs(root / "jump")
    with pytest.warns(UserWarning, match="1 of 3 class folders .* hold no videos: jump"):
        index = class_folder_index(root)
    assert index.class_names == ["jump", "run", "walk"] and index.source == "video"
    assert [(os.path.basename(r.path), r.label) for r in index] == [("x.mkv", 1), ("y.mov", 1), ("a.webm", 2),
                                                                    ("b.MP4", 2)]


def test_class_folders_frames_and_mixed(tmp_path):
    root = tmp_path / "frames"
    touch(root / "run" / "clip1" / "img_00001.jpg", root / "walk" / "clip2" / "flow_x_00001",
          root / "walk" / "clip2" / "flow_y_00001")
    os.makedirs(root / "walk" / "empty_folder")
    index = class_folder_index(root)
    assert index.source == "frames" and [(os.path.basename(r.path), r.label) for r in index] == [("clip1", 0),
                                                                                                ("clip2", 1)]
    touch(root / "walk" / "video.avi")
    with pytest.raises(ValueError, match="mixes video files"):
        class_folder_index(root)
    with pytest.raises(ValueError, match="no class folders"):
        class_folder_index(root / "run" / "clip1")


def test_csv_index_int_and_name_labels(tmp_path):
    data = tmp_path / "data"
    touch(data / "videos" / "a.mp4", data / "videos" / "b.avi", tmp_path / "elsewhere" / "videos" / "a.mp4")
    absolute = str(data / "videos" / "b.avi")
    ints = write(data / "list.csv", ["path,label", "videos/a.mp4,2", f"{absolute},0", "videos/gone.mp4,1"], crlf=True)
    with pytest.warns(MissingFilesWarning, match="1 of 3"):
        index = csv_index(ints)
    assert index.class_names == ["class_0", "class_1", "class_2"]
    assert [(r.path, r.label) for r in index] == [(os.path.join(data, "videos", "a.mp4"), 2), (absolute, 0)]
    assert index.missing == [os.path.join(data, "videos/gone.mp4")]
    names = write(data / "names.csv", ["videos/a.mp4,walk", "videos/A.MP4,run"])  # no header; case fallback
    index = csv_index(names, root=tmp_path / "elsewhere")
    assert index.class_names == ["run", "walk"] and [r.label for r in index] == [1, 0]
    assert index.records[0].path == os.path.join(tmp_path, "elsewhere", "videos", "a.mp4")
    named = write(data / "named.csv", ["label,path,class", "1,videos/a.mp4,walk", "0,videos/b.avi,run"])
    assert csv_index(named).class_names == ["run", "walk"]


def test_csv_index_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="csv_path="):
        csv_index(tmp_path / "none.csv")
    bad = write(tmp_path / "bad.csv", ["path,label", "a.mp4,1", "b.mp4,-1"])
    with pytest.raises(ValueError, match="bad.csv, line 3: labels must be >= 0"):
        csv_index(bad)
    bad = write(tmp_path / "bad.csv", ["path,label", "a.mp4,1", "b.mp4"])
    with pytest.raises(ValueError, match="bad.csv, line 3: expected 'path,label'"):
        csv_index(bad)
    bad = write(tmp_path / "bad.csv", ["path,label,class", "a.mp4,1,run", "b.mp4,1,walk"])
    with pytest.raises(ValueError, match="line 3: label 1 is class 'run' earlier and 'walk' here"):
        csv_index(bad)


# ---------------------------------------------------------------- build_index
def build_pairs(ucf_root, hmdb_root, k_root, k_csv, f_root, settings, csv_path, tmp_path):
    return [
        (build_index("ucf101", ucf_root, subset="test"), ucf101_index(ucf_root, subset="test")),
        (build_index("hmdb51", hmdb_root, split=2), hmdb51_index(hmdb_root, split=2)),
        (build_index("kinetics", k_root, k_csv), kinetics_index(k_root, k_csv)),
        (build_index("frames", f_root, settings, modality="flow"), reference_frames_index(f_root, settings, "flow")),
        (build_index("folders", ucf_root), class_folder_index(ucf_root)),
        (build_index("csv", csv_path), csv_index(csv_path)),
    ]


def test_build_index_dispatches_and_validates(tmp_path):
    ucf_root, _ = ucf_tree(tmp_path / "u")
    hmdb_root, _ = hmdb_tree(tmp_path / "h", skip=())
    k_root, k_csv = kinetics_tree(tmp_path / "k")
    f_root, settings = frames_tree(tmp_path / "f")
    csv_path = write(tmp_path / "c" / "list.csv", ["x.mp4,run"])
    touch(tmp_path / "c" / "x.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing entries; folders: ucfTrainTestlist is a class without videos
        pairs = build_pairs(ucf_root, hmdb_root, k_root, k_csv, f_root, settings, csv_path, tmp_path)
    for built, direct in pairs:
        assert built.to_json() == direct.to_json() and built.class_names == direct.class_names
    assert len(pairs[-1][0]) == 1
    with pytest.raises(FileNotFoundError, match="none of the 1 listed"):  # root changes what relative paths mean
        build_index("csv", tmp_path, annotations=csv_path)
    assert json.loads(pairs[0][0].to_json())[0]["class"] == "ApplyEyeMakeup"
    assert DATASETS == ("ucf101", "hmdb51", "kinetics", "frames", "folders", "csv")
    with pytest.raises(ValueError, match="dataset='ucf'"):
        build_index("ucf", ucf_root)
    with pytest.raises(ValueError, match="modality='flow'"):
        build_index("ucf101", ucf_root, modality="flow")
    with pytest.raises(ValueError, match="classes="):
        build_index("hmdb51", hmdb_root, classes=["a"])
    with pytest.raises(ValueError, match="dataset='csv' needs a CSV"):
        build_index("csv", tmp_path)


def test_ucf101_reads_the_synthetic_dataset(tmp_path):
    """Real encoded videos (mp4 and avi) in the UCF101 layout from the embedded generator."""
    synthetic = pytest.importorskip("keras_bert3d.data.synthetic")
    info = synthetic.write_synthetic_dataset(tmp_path, num_classes=2, videos_per_class=4, num_frames=16, size=(32, 24))
    expected = {v["path"]: v["label"] for v in info["videos"]}
    with no_warning():
        train, test = ucf101_index(tmp_path, subset="train"), ucf101_index(tmp_path, subset="test")
    assert train.class_names == test.class_names == info["class_names"]
    seen = {os.path.relpath(r.path, tmp_path).replace(os.sep, "/"): r.label for r in [*train, *test]}
    assert seen == expected and len(train) > 0 and len(test) > 0
    assert {os.path.splitext(p)[1] for p in seen} == {".mp4", ".avi"}
    folders = class_folder_index(tmp_path)
    assert folders.class_names == sorted(info["class_names"]) and len(folders) == len(expected)


def test_byte_order_mark_and_bare_cr_line_ends(tmp_path):
    """Files saved by Windows tools: a UTF-8 BOM before the header, old-Mac CR line ends."""
    touch(tmp_path / "v" / "a.mp4")
    with open(tmp_path / "bom.csv", "wb") as f:
        f.write("\ufeffpath,label\r\nv/a.mp4,walk\r\n".encode())
    index = csv_index(tmp_path / "bom.csv")
    assert index.class_names == ["walk"] and len(index) == 1
    root, ann = ucf_tree(tmp_path / "u")
    with open(os.path.join(ann, "classInd.txt"), "wb") as f:
        f.write("\ufeff".encode() + "\r".join(f"{i + 1} {n}" for i, n in enumerate(UCF_CLASSES)).encode())
    assert ucf101_index(root, subset="test").class_names == UCF_CLASSES
