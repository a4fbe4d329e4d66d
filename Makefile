# flair2 — set-up, tests and the demo. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision pinned to the releases available on this project's machines
# (PyPI's torchvision does not import beside other torch builds).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= demo
SITE_DIR ?= site
STAMP := $(VENV)/.installed

.PHONY: install test lint docs format demo clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Layers (import-linter, contracts in pyproject.toml), ruff (docstrings: Google
# convention on src/), formatting, and mypy on src/.
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The documentation site (mkdocs + mkdocstrings), warnings as errors.
docs: install
	$(BIN)/mkdocs build --strict --quiet --site-dir $(SITE_DIR)

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint docs
	$(BIN)/python -m pytest

demo: install
	$(BIN)/flair2 demo --out $(DEMO_DIR)

clean-demo:
	rm -rf $(DEMO_DIR)
