# The two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-full install clean bench

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# torch is optional (only `bert3d convert` of .pth files); the tests read real .pth files with it.
	$(PY) -m pip install --quiet "torch==2.13.0" || echo "torch not installed: the .pth tests will be skipped"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m training.demo

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n 2 -m "not full_export" $(PYTEST_ARGS) tests

test-full: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n 2 $(PYTEST_ARGS) tests

bench: $(STAMP)
	$(PY) bench/bench_models.py

clean:
	rm -rf $(VENV) build *.egg-info
