# The two commands: `make run` and `make test`. Everything else is set up from here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run test test-fast fuzz bench drill clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# make run keeps a generated admin token in var/admin-token (mode 600) unless TSREVEL_ADMIN_TOKEN is set,
# so /admin/* works locally without a well-known token and without printing the secret.
run: install
	mkdir -p var
	test -s var/admin-token || (umask 077 && $(PY) -c "import secrets; print(secrets.token_urlsafe(32))" > var/admin-token)
	@echo "Operators' console: http://$(HOST):$(PORT)/console (sign in with the token in var/admin-token, or your TSREVEL_ADMIN_TOKEN)"
	TSREVEL_ADMIN_TOKEN="$${TSREVEL_ADMIN_TOKEN:-$$(cat var/admin-token)}" $(PY) -m tsrevel serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# R10/R11 at full size: 10,000 fuzzed requests (schemathesis and hypothesis; `make test` runs 2,500).
fuzz: install
	TSREVEL_FUZZ_CASES=10000 $(PY) -m pytest tests/reliability/test_fuzz.py -m "not e2e" $(PYTEST_ARGS)

# Benchmarks (bench/, writes docs/performance.md); never part of `make test`. Loopback only, about 12 minutes (P5 starts PostgreSQL replicas when 127.0.0.1:5432 answers).
bench: install
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) -m bench.run $(BENCH_ARGS)

# Rehearse the runbook's four incidents on in-memory fakes (no network, no database; a few seconds).
drill: install
	$(PY) -m tsrevel drill

clean:
	rm -rf $(VENV) var/*.db var/*.db-wal var/*.db-shm .pytest_cache .hypothesis
