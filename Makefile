# fivesigma developer entry points.  `make run` and `make test` are the whole quick start:
# both create .venv on first use from the pinned requirements.lock (no downloads beyond
# the package registries), then do their job.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
PYTEST_ARGS ?=

.PHONY: run test lint venv bench lock clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/fivesigma run

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -n $(JOBS) --doctest-modules $(PYTEST_ARGS) tests src/fivesigma

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# Each script prints one JSON object with a reference measured in the same run.
bench: $(STAMP)
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_read.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_generate_jets.py
	$(BIN)/python bench/bench_taggers.py
	$(BIN)/python bench/bench_jet_frame.py

# Refresh the pins after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch==' \
	  | sed '1i # Exact versions for the set-up path (make venv). Regenerate with: make lock\n# torch 2.13.0 is the CPU build (local wheel on the project machines; on PyPI use\n#   --extra-index-url https://download.pytorch.org/whl/cpu).\ntorch==2.13.0' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
