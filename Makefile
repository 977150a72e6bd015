# taskmill: `make demo` runs the main job, `make test` runs the tests.
# Both set everything up first on a machine with Python 3.11+ and git.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CACHE  := .cache

.PHONY: all install demo test lint typecheck bench agents clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m taskmill.demo

test: $(STAMP) agents
	$(BIN)/python -m pytest -q -n 2

# The real agent CLIs, at pinned versions, in an ignored cache folder (skipped when npm is
# missing: their tests then skip and say so).
agents: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		$(BIN)/python -m taskmill.testing.agent_install --cache $(CACHE)/agents; \
	else echo "npm not found: the real agent CLI tests will be skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(CACHE) build dist
