# The README's two commands are `make demo` and `make test`; both set everything up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv tools kafka demo test lint unit bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# kcat (librdkafka's command-line client) publishes with librdkafka's default partitioner in
# tests/integration/test_kcat.py. Installed from Debian's packages when missing.
KCAT_HINT := install kcat yourself (Debian/Ubuntu: apt-get install kcat; macOS: brew install kcat) and run make again

tools:
	@command -v kcat >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "make tools: kcat is missing and installing it needs root or sudo: $(KCAT_HINT)" >&2; exit 1; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "make tools: kcat is missing and there is no apt-get: $(KCAT_HINT)" >&2; exit 1; }; \
	echo "make tools: installing kcat with apt-get"; \
	{ $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kcat; } \
	  || { echo "make tools: apt-get could not install kcat: $(KCAT_HINT)" >&2; exit 1; }; \
	command -v kcat >/dev/null 2>&1 || { echo "make tools: kcat still not on PATH after apt-get: $(KCAT_HINT)" >&2; exit 1; }

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

test: tools venv kafka lint
	$(PY) -m pytest -q

bench: venv kafka
	$(PY) -m app.bench

clean:
	rm -rf $(VENV) build *.egg-info
