# Two commands do all the set-up: `make run` (launch the app) and `make test` (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tunedeck-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test setup lint bench clean-venv

setup: $(STAMP)

# Re-run the installer only when what it installs changed: a no-op when up to date.
$(STAMP): pyproject.toml scripts/setup.sh
	@bash scripts/setup.sh $(VENV)
	@touch $(STAMP)

run: $(STAMP)
	@$(VENV)/bin/tunedeck $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# The suite runs on TEST_WORKERS pytest-xdist workers, a test file per worker at a time (its module fixtures
# are built once): tests that wait on processes overlap tests that compute. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: lint
	@bash scripts/test_deps.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench/startup.py

clean-venv:
	rm -rf $(VENV)
