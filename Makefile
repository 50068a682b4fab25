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

# Tools the tests need from the system, installed from Debian's packages when missing:
# - kcat (librdkafka's command-line client) publishes with librdkafka's default partitioner in
#   tests/integration/test_kcat.py;
# - postgresql: the server binaries (initdb, pg_ctl under /usr/lib/postgresql/<version>/bin,
#   not on PATH), for the PostgreSQL projection tests (tests/integration/postgres.py starts a
#   throwaway server; without them those tests skip and say why);
# - chromium: a headless browser for the HTML report test.
# It is quick when everything is there, and installs whatever is missing in one apt-get run.
TOOLS_HINT := install them yourself (Debian: apt-get install kcat postgresql chromium; macOS: brew install kcat postgresql, brew install --cask chromium) and run make again

tools:
	@have_postgres() { \
	  for bin in /usr/lib/postgresql/*/bin; do \
	    [ -x "$$bin/initdb" ] && [ -x "$$bin/pg_ctl" ] && return 0; \
	  done; \
	  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; \
	}; \
	missing_tools() { \
	  command -v kcat >/dev/null 2>&1 || printf ' kcat'; \
	  have_postgres || printf ' postgresql'; \
	  command -v chromium >/dev/null 2>&1 || printf ' chromium'; \
	}; \
	missing=$$(missing_tools); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "make tools: missing$$missing, and installing needs root or sudo: $(TOOLS_HINT)" >&2; exit 1; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "make tools: missing$$missing, and there is no apt-get: $(TOOLS_HINT)" >&2; exit 1; }; \
	echo "make tools: installing$$missing with apt-get"; \
	{ $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; } \
	  || { echo "make tools: apt-get could not install$$missing: $(TOOLS_HINT)" >&2; exit 1; }; \
	still=$$(missing_tools); \
	[ -z "$$still" ] || { echo "make tools: still missing$$still after apt-get: $(TOOLS_HINT)" >&2; exit 1; }

# Assembles Apache Kafka from Maven Central into ~/.cache/autopilot (nothing is committed).
kafka: venv
	$(PY) -m tools.local_kafka assemble

demo: venv kafka
	$(PY) -m tools.demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest -q tests/unit tests/properties tests/replay

test: tools venv kafka lint
	$(PY) -m pytest -q

bench: venv kafka
	$(PY) -m tools.bench

clean:
	rm -rf $(VENV) build *.egg-info
