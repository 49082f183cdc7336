# The developers' front door: set up, run, test, lint, bench.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install services serve test lint bench bench-costs bench-torch bench-ann bench-scifact load faults fuzz clean

$(BIN)/skr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/skr

install: $(BIN)/skr

# PostgreSQL (with pgvector, built by our own script) and Redis on loopback, for the tests;
# the tesseract OCR engine that reads text in images; Chromium for the browser tests; and
# promtool, which checks the Prometheus alert rules and the dashboard's queries.
services:
	bash scripts/ensure-services.sh
	bash scripts/install-pgvector.sh
	bash scripts/install-ocr.sh
	bash scripts/install-chromium.sh
	bash scripts/install-promtool.sh

serve: install
	$(BIN)/skr serve

# lint-imports checks the layers contract in pyproject.toml; uncached, as it takes well
# under a second and then leaves no cache directory in the tree.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: install lint services
	$(BIN)/pytest

# Benchmarks print their figures; docs/benchmarks.md records them with these commands.
bench: install
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_embedder.py

# What one request of each kind costs an embedded `skr serve`: CPU and latency, one at a
# time (most of its time is the seeding crawl); the arithmetic behind `make load`.
bench-costs: install
	$(BIN)/python bench/bench_request_costs.py

# The torch route, for the embedder comparison only (the CPU wheel kept on these machines).
bench-torch: install
	$(BIN)/pip install --quiet -e '.[torch]'
	$(BIN)/python bench/bench_embedder.py

# hnswlib vs faiss vs usearch, in a throwaway venv so the project does not depend on them.
bench-ann:
	$(PYTHON) -m venv .venv-ann
	.venv-ann/bin/pip install --quiet numpy hnswlib==0.8.0 faiss-cpu usearch psutil
	.venv-ann/bin/python bench/bench_ann.py

# Retrieval quality on BEIR SciFact's test queries (issue 5): the longest benchmark, most
# of it indexing (run times in docs/benchmarks.md). Tuning, on the train queries only:
# bench/tune_scifact.py.
bench-scifact: install
	$(BIN)/skr eval ../shared/data/scifact

# Load (issue 6): SKR started in MODE, seeded with the Flask docs, then headless Locust
# (a 1-user baseline, then USERS users); report in bench/results/load-MODE-USERS.md.
# e.g. make load MODE=scale-out USERS=1000 DURATION=3m; make load USERS=100 SPIKE=1
# LOAD_ARGS for run_load.py's own options (`bench/load/run_load.py --help`), e.g.
# --keep (logs and CSVs), --ingesters N, --ingest-new-pages (pages new to SKR to ingest)
MODE ?= embedded
USERS ?= 100
SPAWN_RATE ?= 50
DURATION ?= 3m
SPIKE ?=
LOAD_ARGS ?=
LOAD_TIME_LIMIT ?= 3600

$(BIN)/locust: $(BIN)/skr
	$(BIN)/pip install --quiet -e '.[load]'
	touch $(BIN)/locust

load: install services $(BIN)/locust
	timeout --kill-after=60 $(LOAD_TIME_LIMIT) $(BIN)/python bench/load/run_load.py \
		--mode $(MODE) --users $(USERS) --spawn-rate $(SPAWN_RATE) --duration $(DURATION) \
		$(if $(SPIKE),--spike) $(LOAD_ARGS)

# Faults under steady load (issue 6, scenario 3), scale-out: a worker SIGKILLed, this
# machine's PostgreSQL restarted and Redis stopped and started (run it only where nothing
# else uses them), the answer model failing then slow; report in
# bench/results/faults-scale-out-USERS.md (its run time is in docs/benchmarks.md).
FAULT_ARGS ?=
faults: install services $(BIN)/locust
	timeout --kill-after=60 $(LOAD_TIME_LIMIT) $(BIN)/python bench/load/run_faults.py \
		--users $(USERS) $(FAULT_ARGS)

# API fuzzing (issue 8): schemathesis's coverage cases and FUZZ_EXAMPLES random requests
# per operation and mode, open and with API keys, in process on fakes; prints the statuses
# and any failure with a request to reproduce it (docs/benchmarks.md).
FUZZ_EXAMPLES ?= 500
fuzz: install
	$(BIN)/python bench/fuzz_api.py --examples $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) .venv-ann .pytest_cache .mypy_cache .ruff_cache
