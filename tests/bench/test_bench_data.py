"""bench/bench_data.py: its arguments, and a one-core smoke run whose JSON carries every source, stage and check."""
import json
import os
import runpy
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "bench_data.py")


def test_arguments_take_comma_separated_kinds_and_augments_and_reject_unknown_ones():
    parse_args = runpy.run_path(SCRIPT)["parse_args"]  # the script's functions, main() not run
    args = parse_args(["--quick", "--codecs", "mp4", "--augment", "host,device", "--cores", "1"])
    assert args.codecs == ["mp4"] and args.augment == ["host", "device"] and args.cores == 1
    assert (args.videos, args.frames, args.rounds) == (4, 96, 1)
    assert parse_args([]).codecs == ["avi", "mp4"]
    for bad in (["--codecs", "mkv"], ["--augment", "gpu"], ["--frames", "32"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest.mark.full
def test_one_core_smoke_run_writes_every_source_stage_and_check(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, SCRIPT, "--quick", "--cores", "1", "--stages", "--skip-train", "--codecs", "mp4",
           "--videos", "2", "--frames", "64", "--seconds", "0.1", "--min-batches", "1", "--warmup", "1",
           "--stage-seconds", "0.01", "--augment", "host,device", "--json", str(out)]
    done = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["cores"]) == 1
    assert result["data"][0]["frame_types"].get("B", 0) > 0  # the H.264 kind really has B-frames
    runs = {(r["input"], r["source"], r["augment"]) for r in result["sources"]}
    assert len(runs) == 2 * 3 * 2 and all(r["clips_per_s"] > 0 for r in result["sources"])
    assert len(result["stages"]) == 2 * 3
    for row in result["stages"]:
        assert set(row["ms"]) == {"decode", "resize", "crop", "flip", "normalise", "batch"}
        assert all(v > 0 for v in row["ms"].values()) and row["sum_ms"] == pytest.approx(sum(row["ms"].values()))
    assert [c["stored"] for c in result["dct_scaling"]] == [[256, 340], [512, 680]]
    assert "host only (decode+resize)" in done.stdout and "augment=device / host" in done.stdout
