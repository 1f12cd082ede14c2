# Two commands a new user needs: `make up` (the gateway on this machine) and
# `make test` (the whole suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test unit lint bench validate clean

up: $(STAMP)
	$(BIN)/extproc up

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast suite: no Envoy, no Redis, no child processes, nothing slow.
unit: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not integration and not slow" -n auto --hypothesis-profile=unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check extproc tests bench
	$(BIN)/ruff format --check extproc tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

validate: $(STAMP)
	$(BIN)/extproc policy validate policies

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	@# xds-protos ships a stale copy of opentelemetry/proto that replaces
	@# opentelemetry-proto's files when pip installs it second (grpc/grpc#42926);
	@# the OTLP exporter then fails to import. Put the real ones back.
	$(BIN)/pip install --quiet --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("opentelemetry-proto"))')"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
