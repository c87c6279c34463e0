# earlyrisk developer entry points. Two commands do all set-up:
#   make run    install what running needs into .venv and run the screening job on the
#               bundled data
#   make test   install (with test tools) and run lint + the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The stamps cover the compiled scorer's source too, so editing it rebuilds it.
# install-run: what running needs (make run); install: that plus the test tools.
HASH      := $(shell cat setup.py models/_fastscore.c | sha1sum | cut -c1-12)
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
STAMP     := $(VENV)/.installed-dev-$(HASH)

.PHONY: install install-run services flink run test lint clean bench
install: $(STAMP)
install-run: $(RUN_STAMP)

# System-level test dependencies (browsers, emulators, brokers): each
# deploy/local/install-*.sh is idempotent and quick when already done.
services: install
	@for f in deploy/local/install-*.sh; do [ -e "$$f" ] || continue; echo "== $$f"; VENV=$(VENV) bash "$$f" || exit 1; done

# The native Flink engine (earlyrisk run --engine flink): PyFlink in its own
# venv, .venv-flink (idempotent; ~2.5 min the first time).
flink:
	@PYTHON=$(PYTHON) bash deploy/flink/install.sh

$(RUN_STAMP): setup.py models/_fastscore.c
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@rm -f $(VENV)/.installed-*; touch $@

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-dev-*; touch $@

run: install-run
	$(BIN)/earlyrisk run
	@echo
	@echo "earlyrisk is installed in $(VENV)/: call it as $(BIN)/earlyrisk, or run"
	@echo "'. $(BIN)/activate' once in your shell to call plain 'earlyrisk' (try 'earlyrisk --help')."

lint: install
	$(BIN)/ruff check .

test: install services flink lint
	@# Benchmarks at small sizes: figures printed, never asserted (docs/PERFORMANCE.md).
	$(BIN)/earlyrisk bench --quick --results $(VENV)/bench-quick.json
	$(BIN)/python -m pytest

bench: install services flink
	$(BIN)/earlyrisk bench

clean:
	rm -rf $(VENV) .venv-flink earlyrisk.duckdb earlyrisk-model earlyrisk-eval earlyrisk-simulated earlyrisk-bench.json
