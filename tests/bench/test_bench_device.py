"""bench/bench_device.py: the case order, and a --smoke run on the CPU (JAX) whose JSON carries every field."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "bench_device.py")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_device", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_runs_bfloat16_with_the_default_jit_at_batch_8_first_for_every_model():
    bench = _bench()
    models = list(bench.MODELS)
    cases = bench.plan(models, bench.PRECISIONS, [8, 16], [True, False])
    first = [(c["model"], c["precision"], c["jit"], c["batch"]) for c in cases[:3]]
    assert first == [(m, "mixed_bfloat16", True, 8) for m in models]
    assert [c["precision"] for c in cases[3:6]] == ["float32"] * 3
    assert len(cases) == len(models) * len(bench.PRECISIONS) * 2 * 2  # every combination, once
    assert len({json.dumps(c, sort_keys=True) for c in cases}) == len(cases)
    eager_first = bench.plan(["i3d"], ["float32"], [8], [False, True])
    assert [c["jit"] for c in eager_first] == [False, True]
    with_uint8 = bench.plan(models, bench.PRECISIONS, [8, 16], [True, False], bench.INPUTS)
    assert len(with_uint8) == 2 * len(cases)
    assert [c["input"] for c in with_uint8[:9]] == ["float32"] * 9  # bf16, float32, float16 first
    assert [(c["precision"], c["jit"], c["batch"], c["input"]) for c in with_uint8[9:12]] == \
        [("mixed_bfloat16", True, 8, "uint8")] * 3


def test_ratios_compare_with_the_same_models_float32_and_jit_off():
    bench = _bench()
    ok = dict(model="i3d", batch=8, status="ok")
    records = [dict(ok, precision="float32", jit=True, clips_per_s=10.0),
               dict(ok, precision="mixed_bfloat16", jit=True, clips_per_s=25.0),
               dict(ok, precision="mixed_bfloat16", jit=False, clips_per_s=20.0),
               dict(ok, precision="mixed_float16", jit=True, status="timeout after 10 s"),
               dict(ok, precision="mixed_bfloat16", jit=True, input="uint8", clips_per_s=20.0)]
    assert bench.ratios(records) == {"i3d mixed_bfloat16 jit=True batch=8: mixed_bfloat16 / float32": 2.5,
                                     "i3d mixed_bfloat16 jit=True batch=8: jit on / off": 1.25,
                                     "i3d mixed_bfloat16 jit=True batch=8 input=uint8: uint8 input / float32 input":
                                         0.8}


@pytest.mark.full
def test_smoke_run_on_jax_prints_and_writes_the_json(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, SCRIPT, "--smoke", "--models", "r2plus1d", "--precisions", "float32", "mixed_float16",
           "--inputs", "float32", "uint8", "--max-cases", "3", "--rounds", "1", "--steps", "2", "--budget-s", "500", "--case-timeout-s", "240",
           "--out", str(out)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    written = json.loads(out.read_text())
    assert printed == written
    assert written["backend"] == "jax" and written["smoke"] and written["skipped"] == []
    assert "bench_data.py" in written["host_pipeline"] and "float32" in written["tf32"]
    cases = written["cases"]
    assert [(c["precision"], c["jit"], c["batch"], c["input"]) for c in cases] == \
        [("float32", True, 2, "float32"), ("mixed_float16", True, 2, "float32"), ("float32", True, 2, "uint8")]
    for case in cases:
        assert case["status"] == "ok", case["status"]
        assert case["clips_per_s"] > 0 and case["step_ms"] > 0 and case["steps_timed"] == 2
        assert case["warmup_s"] > 0 and case["params"] > 0 and case["versions"]["keras"]
        assert 0 < case["loss"] < 20  # finite: float16 loss scaling kept the step sane
        assert case["peak_gib"] is None or case["peak_gib"] > 0  # None where the device reports no statistics
    ratio = written["ratios"]["r2plus1d mixed_float16 jit=True batch=2: mixed_float16 / float32"]
    assert ratio == pytest.approx(cases[1]["clips_per_s"] / cases[0]["clips_per_s"], rel=1e-2)
    ratio = written["ratios"]["r2plus1d float32 jit=True batch=2 input=uint8: uint8 input / float32 input"]
    assert ratio == pytest.approx(cases[2]["clips_per_s"] / cases[0]["clips_per_s"], rel=1e-2)
