"""`bert3d index`: summary and first rows, or JSON objects with path, label and class."""
import argparse
import json
import os

import pytest

from keras_bert3d.cli import COMMANDS, main
from keras_bert3d.cli import index as index_cli
from keras_bert3d.data.indexes import DATASETS


def bert3d_index(argv):
    """Through `bert3d` once the lead has registered the command; through the module until then."""
    if "index" in COMMANDS:
        return main(["index", *argv])
    parser = argparse.ArgumentParser(prog="bert3d index")
    index_cli.add_arguments(parser)
    try:
        return index_cli.run(parser.parse_args(argv)) or 0
    except (ValueError, FileNotFoundError) as err:
        print(f"bert3d index: error: {err}", file=__import__("sys").stderr)
        return 2


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write("".join(line + "\r\n" for line in lines).encode())


def ucf_tree(tmp_path, videos=12):
    root = tmp_path / "UCF-101"
    classes = ["ApplyEyeMakeup", "Archery"]
    train = []
    for i in range(videos):
        name = classes[i % 2]
        rel = f"{name}/v_{name}_g{i + 8:02d}_c01.avi"
        train.append(f"{rel} {i % 2 + 1}")
        if i != 5:  # one listed video is not on disk
            os.makedirs(root / name, exist_ok=True)
            open(root / rel, "wb").close()
    write(root / "ucfTrainTestlist" / "classInd.txt", [f"{i + 1} {n}" for i, n in enumerate(classes)])
    write(root / "ucfTrainTestlist" / "trainlist01.txt", train)
    return root


def test_cli_datasets_match_the_library():
    assert index_cli.DATASETS == DATASETS and set(index_cli.CLASS_ORDER) == set(DATASETS)


def test_index_json_lists_path_label_class(tmp_path, capsys):
    root = ucf_tree(tmp_path)
    assert bert3d_index(["ucf101", str(root), "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)  # stdout is pure JSON; the missing report goes to stderr
    assert len(rows) == 11 and all({"path", "label", "class"} <= set(row) for row in rows)
    assert [row["label"] for row in rows[:3]] == [0, 1, 0] and rows[1]["class"] == "Archery"
    assert all(os.path.isfile(row["path"]) and row["root"] == str(root) for row in rows)
    assert "1 of 12" in captured.err and "v_Archery_g13_c01.avi" in captured.err


def test_index_human_summary_and_first_rows(tmp_path, capsys):
    root = ucf_tree(tmp_path)
    assert bert3d_index(["ucf101", str(root), "--rows", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "11 videos in 2 classes (video)" in lines[0]
    assert "1 listed but missing on disk" in lines[0] and "v_Archery_g13_c01.avi" in lines[0]
    assert "0=ApplyEyeMakeup, 1=Archery" in lines[1]
    table = [line for line in lines if line.rstrip().endswith(".avi") and "missing" not in line]
    assert len(table) == 3 and table[0].split()[:2] == ["0", "ApplyEyeMakeup"]
    assert "... 8 more" in out
    assert out.count("v_Archery_g13_c01.avi") == 1  # reported once


def test_index_frames_shows_frame_counts(tmp_path, capsys):
    root, settings = tmp_path / "frames", tmp_path / "settings"
    os.makedirs(root / "v_a_g01_c01")
    write(settings / "val_flow_split2.txt", ["v_a_g01_c01 77 3"])
    args = ["frames", str(root), "--annotations", str(settings), "--split", "2", "--subset", "test",
            "--modality", "flow", "--json"]
    assert bert3d_index(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"path": str(root / "v_a_g01_c01"), "label": 3, "class": "class_3", "num_frames": 77,
                     "root": str(root)}]
    assert bert3d_index(args[:-1]) == 0
    out = capsys.readouterr().out
    assert "1 videos in 4 classes (frames)" in out and " 77  " in out


def test_index_user_errors_exit_2(tmp_path, capsys):
    root = ucf_tree(tmp_path)
    assert bert3d_index(["ucf101", str(root), "--split", "4"]) == 2
    assert "split=4" in capsys.readouterr().err
    assert bert3d_index(["hmdb51", str(root)]) == 2
    assert "_test_split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bert3d_index(["youtube", str(root)])


def test_index_through_bert3d_main(tmp_path, capsys, monkeypatch):
    """The line the lead adds to COMMANDS: `bert3d index` parses, runs and maps user errors to exit 2."""
    assert "index" in COMMANDS
    root = ucf_tree(tmp_path, videos=4)
    assert main(["index", "ucf101", str(root), "--json"]) == 0
    assert [row["class"] for row in json.loads(capsys.readouterr().out)] == ["ApplyEyeMakeup", "Archery"] * 2
    assert main(["index", "kinetics", str(root)]) == 2
    assert "train.csv" in capsys.readouterr().err
