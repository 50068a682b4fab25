# The README's two commands are `make demo` and `make test`; both set everything up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv kafka demo test lint unit bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Assembles Apache Kafka from Maven Central into ~/.cache/autopilot (nothing is committed).
kafka: venv
	$(PY) -m app.local_kafka assemble

demo: venv kafka
	$(PY) -m app.demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

unit: venv
	$(PY) -m pytest -q tests/unit tests/properties

test: venv kafka lint
	$(PY) -m pytest -q

bench: venv kafka
	$(PY) -m app.bench

clean:
	rm -rf $(VENV) build *.egg-info
