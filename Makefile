# The README's commands. Everything runs in a project virtual environment, .venv, created on first use.
# By default it sees the packages already installed for $(PYTHON) (TensorFlow is large); for a fully
# isolated environment: `make VENV_FLAGS= test`.
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?= --system-site-packages
PIP_FLAGS ?= --disable-pip-version-check
PY := $(VENV)/bin/python

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q -e ".[test,dev]"
	# HEAR's validator for tests/test_export.py, without the torch it declares (the test stands in
	# for torch; a CPU torch would triple the install)
	$(PY) -m pip install $(PIP_FLAGS) -q --no-deps "hearvalidator==2021.0.2"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m cpc_tf demo --out cpc_tf_demo

test: install
	$(PY) -m pytest -q tests

lint: install
	$(PY) -m ruff check cpc_tf tests benchmarks
	$(PY) -m ruff format --check cpc_tf tests benchmarks
	$(PY) -m mypy
