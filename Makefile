# Touchstream: `make demo` and `make test` are all a newcomer needs (Python 3.11 + git).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DURATION ?= 60
SUMMARY ?= demo-summary.json
STAMP := $(VENV)/.installed

.PHONY: demo test chaos check lint types bench clean prometheus-tools

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/touchstream demo --duration $(DURATION) --summary-json $(SUMMARY) $(DEMO_ARGS)

test: $(STAMP) prometheus-tools
	$(BIN)/python -m pytest -m "not chaos" $(PYTEST_ARGS)

# promtool and prometheus for tests/deploy and tests/integration/test_prometheus_scrape.py,
# from Debian's prometheus package when they are missing (needs root or passwordless sudo).
# On a host running systemd the package also enables a prometheus service on :9090; the
# tests use their own server on a free port either way.
prometheus-tools:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: promtool/prometheus not found and no apt-get: install Prometheus (promtool and prometheus on PATH) to run the deploy tests" >&2; exit 1; \
	fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=; \
	elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: promtool/prometheus not found: run 'sudo apt-get install prometheus' (or make prometheus-tools as root)" >&2; exit 1; fi; \
	echo "installing Debian's prometheus package (promtool, prometheus) for the deploy tests"; \
	log=$$(mktemp); \
	{ $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >$$log 2>&1 \
	  || { $$SUDO apt-get update -q >>$$log 2>&1 \
	       && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >>$$log 2>&1; }; } \
	  && command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
	  || { cat $$log >&2; rm -f $$log; echo "make: could not install Debian's prometheus package (output above)" >&2; exit 1; }; \
	rm -f $$log

# crash/rebalance runs compared with the offline oracle; long, kept out of make test until
# they pass every time (see tests/chaos)
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check touchstream tests
	$(BIN)/ruff format --check touchstream tests

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: $(STAMP)
	$(BIN)/touchstream bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
