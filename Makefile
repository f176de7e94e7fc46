# Two commands set up a fresh machine:
#   make demo   installs, trains the small English→Chinese model, translates
#   make test   installs (chromium too, when root with apt-get) and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ROSETTA_DATA ?= $(abspath ../shared/data)
export ROSETTA_DATA
# The CPU wheel of torch; a bare "torch" would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install install-test browser demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/rosetta demo --data-dir "$(ROSETTA_DATA)"

# The browser test drives Debian's chromium: installed here when missing and we are root with apt-get;
# otherwise (or if that fails) the run goes on and pytest's summary says the browser test was skipped, and why.
browser:
	@sh tests/browser_setup.sh

test: install-test browser
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: install-test
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
