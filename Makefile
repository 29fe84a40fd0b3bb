# Every target a person runs. `make demo` and `make test` bootstrap .venv themselves.
# The first Python >= 3.11 on PATH. A pyenv shim for a version that is not active prints
# "command not found" on stderr: the probe stays silent and tries the next name.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make demo PORT=5150 HOST=0.0.0.0`: where the demo's web server listens (its live
# updates on PORT + 1, or SOCKET_PORT).
DEMO_ARGS := $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST)) $(if $(SOCKET_PORT),--socket-port $(SOCKET_PORT))

.PHONY: demo test lint format bench clean venv

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "rapidresponse needs Python 3.11 or newer on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/rapidresponse demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache *.egg-info
