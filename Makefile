# earlyrisk developer entry points. Two commands do all set-up:
#   make run    install into .venv and run the screening job on the bundled data
#   make test   install (with test tools) and run lint + the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The stamp covers the compiled scorer's source too, so editing it rebuilds it.
STAMP  := $(VENV)/.installed-$(shell cat setup.py models/_fastscore.c | sha1sum | cut -c1-12)

.PHONY: install services flink run test lint clean bench
install: $(STAMP)

# System-level test dependencies (browsers, emulators, brokers): each
# deploy/local/install-*.sh is idempotent and quick when already done.
services: install
	@for f in deploy/local/install-*.sh; do [ -e "$$f" ] || continue; echo "== $$f"; VENV=$(VENV) bash "$$f" || exit 1; done

# The native Flink engine (earlyrisk run --engine flink): PyFlink in its own
# venv, .venv-flink (idempotent; ~2.5 min the first time).
flink:
	@PYTHON=$(PYTHON) bash deploy/flink/install.sh

$(STAMP): setup.py models/_fastscore.c
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

run: install
	$(BIN)/earlyrisk run

lint: install
	$(BIN)/ruff check .

test: install services flink lint
	@# Benchmarks at small sizes: figures printed, never asserted (docs/PERFORMANCE.md).
	$(BIN)/earlyrisk bench --quick --results $(VENV)/bench-quick.json
	$(BIN)/python -m pytest

bench: install services flink
	$(BIN)/earlyrisk bench

clean:
	rm -rf $(VENV) .venv-flink earlyrisk.duckdb earlyrisk-model
