# One task runner for everything a developer types.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo install dev browser i18n test lint bench clean

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

# Customer-page messages (Babel): re-extract from the templates and the cashier's catalogues and
# merge into each language's .po (translate the new entries; tests/web fails on any left empty).
# The .po files are the source; paymux compiles them when first used.
i18n: dev
	$(BIN)/pybabel -q extract -F src/paymux/locale/babel.cfg -k N_ --no-location --omit-header \
	  -o src/paymux/locale/messages.pot .
	$(BIN)/pybabel -q update -i src/paymux/locale/messages.pot -d src/paymux/locale \
	  --no-fuzzy-matching

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite on every core (pytest-xdist; each worker has its own databases): TEST_WORKERS=0 runs
# it in one process.
TEST_WORKERS ?= auto
test: dev lint browser
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The lifecycle bench prints each figure beside its target (issue 11); the long forms are flags:
# bench/lifecycle.py --only postgresql --soak-seconds 1800, --payments 3000, --feature NAME=off.
bench: dev
	$(BIN)/python bench/lifecycle.py --json --scaling
	$(BIN)/python bench/roundtrips.py --json
	$(BIN)/python bench/ledger.py --json
	$(BIN)/python bench/routing.py --json
	$(BIN)/python bench/cashier.py --json
	$(BIN)/python bench/recon.py --json
	$(BIN)/python bench/risk.py --json

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache paymux-demo.db*
