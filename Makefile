PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Most tests wait on spawned bin/cpi processes and simulated jobs: four workers keep two cores busy.  Measured on
# this 2-core machine, quiet, 2026-11-30: 3 workers 178 s, 4 workers 156 s (248 + 37 CPU-seconds); earlier, when
# fewer tests waited on jobs, a fourth worker had made no difference.
test: $(STAMP)
	$(PY) -m pytest -n 4 --dist worksteal -q

# Lint and types (configured in pyproject.toml): ruff on the code, its tests and benchmarks; mypy on src.
lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy

demo: $(STAMP)
	$(PY) -m cloudstack_cpi.cli demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
