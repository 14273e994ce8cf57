# Developer entry points. `make lint` and `make test` are what CI runs (through .ci/run).
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
# Test files in three processes by default, each file's tests in one process (its module fixtures start servers
# once); PYTEST_WORKERS=0 runs them one after another.
PYTEST_WORKERS ?= 3
DEMO_ARGS ?=
BENCH ?= $(filter-out bench/__init__.py bench/common.py bench/baseline.py bench/chaos_faults.py bench/chaos_failover.py bench/dashboard_seed.py,$(sort $(wildcard bench/*.py)))
BENCH_ARGS ?=
BIN := $(VENV)/bin

.PHONY: install demo test lint bench samples clean distclean

install: $(VENV)/.installed

# Rebuilt whenever pyproject.toml changes; the version check runs only when (re)installing.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "error: extendq needs Python 3.11 or newer, but '$(PYTHON)' is $$($(PYTHON) -V 2>&1 || echo missing)." >&2; \
		echo "       Run e.g.: make PYTHON=python3.11 $(MAKECMDGOALS)" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/extendq demo $(DEMO_ARGS)

# The dashboard's browser tests drive Debian's chromium through chromedriver: installed first when missing (best effort).
test: install
	-@tools/ensure_browser.sh
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every bench/*.py by default; one of them with e.g. `make bench BENCH=bench/emulator.py BENCH_ARGS=--duration=5`.
bench: install
	@set -e; for script in $(BENCH); do echo "== $$script"; $(BIN)/python $$script $(BENCH_ARGS); done

samples: install
	$(BIN)/python tools/make_samples.py

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
