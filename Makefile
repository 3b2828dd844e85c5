# Two commands on a fresh machine (python3, make and a C compiler are all they need):
#   make demo   — create .venv, install Warden, run `warden demo` on the embedded SQLite store
#   make test   — create .venv, install Warden with its dev extras, run the whole test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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
