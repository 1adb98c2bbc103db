import json
import re

import pytest

from keras_bert3d.cli import main
from keras_bert3d.presets import REFERENCE_PARAMS_51


@pytest.mark.full
def test_models_json(capsys):
    names = ["rgb_I3D64f_bert2_FRMB", "rgb_slowfast64f_50_bert10_FRAB_late"]
    assert main(["models", *names, "--json", "--num-classes", "51"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == names
    for row in rows:
        assert row["params"] == REFERENCE_PARAMS_51[row["name"]]
    assert rows[1]["tokens"] == [[8, 512], [32, 256]]


@pytest.mark.full
def test_models_table_and_num_classes(capsys):
    assert main(["models", "rgb_I3D64f", "--num-classes", "101"]) == 0
    out = capsys.readouterr().out
    # UCF101: + 50 * (1024 + 1) over the 51-class count (REFERENCE.md section 7)
    assert f"{REFERENCE_PARAMS_51['rgb_I3D64f'] + 51_250:,}" in out
    assert "64 x 224^2 x 3" in out


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["models", "rgb_I3D64f_bert"]) == 2
    assert "Did you mean" in capsys.readouterr().err


@pytest.mark.full
def test_demo_prints_classes_and_attention(capsys):
    assert main(["demo", "--model", "rgb_I3D64f_bert2_FRMB", "--num-classes", "7"]) == 0
    out = capsys.readouterr().out
    assert "top-5 classes:" in out
    probs = [float(p) for p in re.findall(r"p=([0-9.]+)", out)]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    rows = re.findall(r"token\s+(\d+) #* +([0-9.]+)", out)
    assert [int(t) for t, _ in rows] == list(range(8))  # I3D: 8 temporal tokens
    assert 0 < sum(float(p) for _, p in rows) <= 1.0


def test_demo_refuses_a_tgap_model(capsys):
    assert main(["demo", "--model", "rgb_I3D64f"]) == 2
    assert "no BERT" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("models", "convert", "demo"):
        assert command in out
