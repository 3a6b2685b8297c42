# The two set-up commands are `make serve` and `make test`; both work on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STORE  ?= model_archives
# Re-install whenever the project's dependencies change.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: serve test lint install install-test system-test-deps bench bench-http fuzz soak demo-archives clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## make serve: install, then serve the bundled archives (dashboard + REST API).
serve: install
	$(VENV)/bin/yyai serve --store $(STORE)

## System packages the tests drive: Debian's chromium for the browser test.
system-test-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## make lint: ruff and mypy, as configured in pyproject.toml (README: Lint and types).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Test workers: most tests wait on a server or a subprocess, so two share the two cores well;
# each test module stays in one worker, and the Ray modules share one (tests/conftest.py).
TEST_WORKERS ?= 2

## make test: install with the test extras and system packages, lint and type-check, then run every test.
test: install lint system-test-deps
	$(VENV)/bin/pytest -q -ra --durations=15 -n $(TEST_WORKERS) --dist loadgroup

## Rebuild the bundled demo archives from package-shipped data (fixed seeds).
demo-archives: install
	$(PY) scripts/make_demo_archives.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

## make bench: the peer comparison (installs each peer into bench/.venvs/).
bench: install
	$(PY) bench/compare.py

## make bench-http: HTTP serving overhead, yyai serve vs the same model in-process (~3 min).
bench-http: install
	$(PY) bench/http_bench.py --write-results

## make soak: 16 clients for 5 minutes with reloads, uploads and default swaps; writes ## Soak of bench/RESULTS.md.
soak: install
	$(PY) bench/soak.py --write-results $(SOAK_ARGS)

## make fuzz: the long fuzz runs (archive reader, image decoder, the live API under schemathesis),
## random seeds, a few minutes in all; `make test` runs the same tests short and seeded.
fuzz: install
	YYAI_FUZZ=long $(VENV)/bin/pytest -q -ra --durations=10 --hypothesis-show-statistics \
	  tests/test_fuzz.py tests/test_api_fuzz.py
