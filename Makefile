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

test: lint
	@bash scripts/test_deps.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench/startup.py

clean-venv:
	rm -rf $(VENV)
