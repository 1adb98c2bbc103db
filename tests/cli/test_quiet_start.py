"""`bert3d` hides TensorFlow's C++ start-up logging (written to descriptor 2 at import) unless asked, and
still shows a failing import's output."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TF_LINES = ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub")


def _run(code, tmp_path, **env):
    env = {**{k: v for k, v in os.environ.items() if k != "BERT3D_VERBOSE"},
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def _noisy_module(tmp_path, name, fail):
    (tmp_path / f"{name}.py").write_text(
        "import os\nos.write(2, b'C-LEVEL START-UP LINE\\n')\n" + ("raise ImportError('broken build')\n" if fail else ""))


def test_start_up_lines_hidden_and_shown_on_request(tmp_path):
    _noisy_module(tmp_path, "noisy_ok", fail=False)
    code = ("from keras_bert3d.cli import quiet_start; import sys; quiet_start.import_quietly('noisy_ok');"
            "print('after', file=sys.stderr)")
    quiet = _run(code, tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "C-LEVEL START-UP LINE" not in quiet.stderr and "after" in quiet.stderr
    loud = _run(code, tmp_path, BERT3D_VERBOSE="1")
    assert "C-LEVEL START-UP LINE" in loud.stderr


def test_a_failing_import_shows_what_it_wrote_and_raises(tmp_path):
    _noisy_module(tmp_path, "noisy_broken", fail=True)
    done = _run("from keras_bert3d.cli import quiet_start; quiet_start.import_quietly('noisy_broken')", tmp_path)
    assert done.returncode != 0
    assert "C-LEVEL START-UP LINE" in done.stderr and "broken build" in done.stderr


def test_a_missing_module_is_skipped(tmp_path):
    done = _run("from keras_bert3d.cli import quiet_start; print(quiet_start.import_quietly('no_such_mod_x'))",
                tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr


@pytest.mark.full
def test_bert3d_prints_no_tensorflow_start_up_logging(tmp_path):
    """The real command: no TF C++ line by default; ``--verbose`` shows them (so the check can fail)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("BERT3D_VERBOSE", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    # argv[0] "bert3d", as the console script has it: the package then defers the API (and TensorFlow) to main
    cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'bert3d'; from keras_bert3d.cli import main; sys.exit(main())"]
    quiet = subprocess.run(cmd + ["models", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not any(line in quiet.stderr for line in TF_LINES), quiet.stderr[-2000:]
    loud = subprocess.run(cmd + ["--verbose", "models", "--json"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert loud.returncode == 0 and any(line in loud.stderr for line in TF_LINES), loud.stderr[-2000:]
