# aiowget: `make demo` shows the main job on a local server; `make test` is what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install bench mutate soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m aiowget.demo

lint: $(STAMP)
	$(BIN)/ruff check aiowget tests benchmarks
	$(BIN)/ruff format --check aiowget tests benchmarks
	$(BIN)/mypy --strict

test: lint
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -q
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

# Mutation testing of policy.py and storage.py (about an hour; not part of `make test`).
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats
	cat mutants/mutmut-cicd-stats.json

# Needs nginx, curl, aria2 and GNU time (sudo apt-get install -y nginx curl aria2 time); see benchmarks/.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/bench_dask.py
	$(BIN)/python benchmarks/bench_polite.py

# Chaos at scale: the command against tests/chaos.py's server at 50,000 URLs, one request in
# five broken (a few minutes; not part of `make test`). Replay: make soak SOAK='--seed S'.
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(SOAK)

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache .pytest_cache mutants
