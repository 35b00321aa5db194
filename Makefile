# Two commands do all the set-up on a fresh machine:
#   make demo   a whole cutover against the local sandbox (left running; `make demo-down` stops it)
#   make test   every test, the slow end-to-end ones included
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo demo-down lint bench audit chaos clean

setup: $(STAMP) node_modules/.bin/heroku
	@scripts/system-deps.sh
	@scripts/bench-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The heroku CLI, pinned to 11.10.0 by package-lock.json.
node_modules/.bin/heroku: package.json package-lock.json
	@scripts/system-deps.sh
	npm ci --no-audit --no-fund --loglevel=error
	@touch node_modules/.bin/heroku

# The whole suite on parallel workers (pytest-xdist). Each test file is one unit of work, the
# heaviest first (tests/conftest.py); most tests wait on subprocesses and servers, so four
# workers pay even on two cores. TEST_WORKERS=0 runs it in this process, one test at a time.
TEST_WORKERS ?= 4

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup
	$(BIN)/pytest -m 'not slow'

# mypy reads pyproject.toml: explicit package bases under tests/ (three conftest.py files).
lint: setup
	$(BIN)/ruff check cutover tests
	$(BIN)/ruff format --check cutover tests
	$(BIN)/mypy cutover tests

demo: setup
	$(BIN)/cutover sandbox up
	$(BIN)/cutover run -f playbooks/sandbox.yml --yes
	$(BIN)/cutover status -f playbooks/sandbox.yml
	@echo
	@echo "The sandbox is still up: try '$(BIN)/cutover log -f playbooks/sandbox.yml'."
	@echo "Stop it with 'make demo-down'."

demo-down: setup
	$(BIN)/cutover sandbox down
	rm -rf playbooks/.cutover

# Issue 10's benchmark: BENCH_SCALE=N sizes the reference data (default 40, about 1 GB;
# BENCH_SCALE=2 takes a few minutes). Needs pgcopydb (scripts/bench-deps.sh installs it).
bench: setup
	@scripts/bench-deps.sh
	$(BIN)/python -m cutover.bench

# Issue 15's secrets audit: a whole sandbox cutover and rollback with every child's argv and
# environment recorded, then every place scanned for every secret (cutover/sandbox/audit/).
# Ends with `audit: L leaks in P places checked`; exits 1 on any leak.
audit: setup
	$(BIN)/python -m cutover.sandbox.audit

# Issue 15: kill -9 cutover at every step boundary and inside the long steps (and inside a
# rollback), resume, compare the world with an uninterrupted run's. CHAOS_POINTS=N (default 5,
# about 10 minutes) or CHAOS_POINTS=all. Ends with `chaos: K/N kill points recovered`.
chaos: setup
	$(BIN)/python -m cutover.sandbox.chaos

clean:
	rm -rf $(VENV) node_modules .sandbox playbooks/.cutover
