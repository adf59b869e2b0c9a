PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install clean

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

demo: $(STAMP)
	$(PY) -m cloudstack_cpi.cli demo

clean:
	rm -rf $(VENV) .pytest_cache
