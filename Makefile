# The two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh machine.
# Any Python that TensorFlow 2.21 ships wheels for works: `make test PYTHON=python3.13` (3.10 to 3.13);
# a .venv of another version is rebuilt.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The interpreter itself: PYTHON on the PATH, else a pyenv build of that name (pyenv's shims refuse a version
# that is not selected).
PYTHON_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	ls $(HOME)/.pyenv/versions/*/bin/$(PYTHON) 2>/dev/null | tail -n 1)
PYVER := $(shell $(PYTHON_EXE) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
STAMP := $(VENV)/.installed-$(PYVER)
PYTEST_ARGS ?=

.PHONY: demo test test-full test-backends install clean bench

$(STAMP): setup.py
	@test -n "$(PYVER)" || { echo "$(PYTHON) not found: set PYTHON=python3.10 ... python3.13"; exit 1; }
	@$(PYTHON_EXE) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' || \
		{ echo "keras_bert3d needs Python 3.10 to 3.13 (TensorFlow 2.21's wheels); $(PYTHON) is $(PYVER)"; exit 1; }
	@if test -x $(PY) && test "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)"; \
		then echo "rebuilding $(VENV) for Python $(PYVER)"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON_EXE) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# torch is optional (only `bert3d convert` of .pth files); the tests read real .pth files with it. Only a
	# CPU wheel already on this machine is taken (PyPI's would be a multi-GB CUDA build).
	($(PY) -m pip install --quiet --no-index --no-deps "torch==2.13.0" && $(PY) -m pip install --quiet "torch==2.13.0") \
		|| echo "torch not installed: the .pth tests will be skipped"
	rm -f $(VENV)/.installed*
	touch $(STAMP)

install: $(STAMP)

# `make demo KERAS_BACKEND=jax` (or torch) runs it on that backend, installing it first.
demo: $(STAMP)
	$(if $(filter jax,$(KERAS_BACKEND)),$(PY) -m pip install --quiet -e ".[jax]")
	KERAS_BACKEND=$(or $(KERAS_BACKEND),tensorflow) TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m training.demo

# pytest's exit status 5 ("no tests collected") is a pass for a tier that selects nothing (e.g. with
# PYTEST_ARGS="-k ..."): every other failure still fails make.
PYTEST = TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q
ALLOW_EMPTY = || { status=$$?; test $$status -eq 5 || exit $$status; }

# The two tiers of tests/ split the suite: `make test` (the README's command) leaves out the `full` and
# `full_export` tests (full-size models, subprocess-heavy command lines, multi-worker and long training runs,
# every preset's export), which `make test-full` runs; CI runs both (.ci/run), so nothing runs twice.
test: $(STAMP)
	$(PYTEST) -n 2 -m "not full and not full_export" $(PYTEST_ARGS) tests $(ALLOW_EMPTY)

# The full tier includes the no-TensorFlow import test and bench_device's smoke run, which run on JAX.
test-full: $(STAMP)
	$(PY) -m pip install --quiet -e ".[jax]"
	$(PYTEST) -n 2 -m "full or full_export" $(PYTEST_ARGS) tests $(ALLOW_EMPTY)

# The cross-backend tests (tests/backends): every preset at tiny size on JAX and PyTorch against TensorFlow,
# .keras files across backends, training on JAX (TF's numbers, exact resume, bfloat16), JAX export,
# DataParallel, a torch loop; the two full-size presets with BACKENDS_MARK=. CI runs it after the two tiers.
BACKENDS_MARK ?= not backends_full
test-backends: $(STAMP)
	$(PY) -m pip install --quiet -e ".[jax]"
	BERT3D_TEST_BACKENDS=1 $(PYTEST) -n 0 -m "$(BACKENDS_MARK)" $(PYTEST_ARGS) tests/backends $(ALLOW_EMPTY)

bench: $(STAMP)
	$(PY) bench/bench_models.py

clean:
	rm -rf $(VENV) build *.egg-info
