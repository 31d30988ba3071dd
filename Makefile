# One task runner for everything a developer types.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo install dev browser test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

demo: install
	$(BIN)/paymux demo --port $(PORT)

# Browser tests use Debian's chromium (never `playwright install`, which downloads a browser).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium fonts-noto-cjk; } || \
	  echo "chromium is missing: browser tests will be skipped (apt-get install chromium fonts-noto-cjk)"

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src
	$(BIN)/mypy
	$(BIN)/lint-imports

test: dev lint browser
	$(BIN)/pytest

# The lifecycle bench prints each figure beside its target (issue 11); the long forms are flags:
# bench/lifecycle.py --only postgresql --soak-seconds 1800, --payments 3000, --feature NAME=off.
bench: dev
	$(BIN)/python bench/lifecycle.py --json --scaling
	$(BIN)/python bench/ledger.py --json
	$(BIN)/python bench/routing.py --json

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache paymux-demo.db*
