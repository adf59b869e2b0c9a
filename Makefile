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

# Most tests wait on spawned bin/cpi processes and simulated jobs: three workers keep two cores busy (a fourth
# only adds its own start-up: measured the same wall time, 12 CPU-seconds more).
test: $(STAMP)
	$(PY) -m pytest -n 3 --dist worksteal -q

# Lint and types (configured in pyproject.toml): ruff on the code, its tests and benchmarks; mypy on src.
lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy

demo: $(STAMP)
	$(PY) -m cloudstack_cpi.cli demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
