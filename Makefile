PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint install clean golden mutation

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out demo-output

# The suite runs on a pytest-xdist worker per core (at most 4: each worker imports and
# collects everything first, about 8 s of CPU); tests marked xdist_group share a worker.
# PYTEST_XDIST_AUTO_NUM_WORKERS=1 (or `$(PY) -m pytest`) runs it on fewer.
XDIST := -n auto --maxprocesses 4 --dist loadgroup

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST)

test-fast: $(STAMP)  # the suite less the tests marked slow: under a minute on 2 idle cores
	$(PY) -m pytest -q $(XDIST) -m "not slow"

$(VENV)/.bench: $(STAMP) requirements-bench.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $(VENV)/.bench

bench: $(VENV)/.bench  # each script prints its tables; BENCHMARKS.md has the last run of each
	$(PY) benchmarks/circular.py
	$(PY) benchmarks/spectra.py
	$(PY) benchmarks/family_recovery.py
	$(PY) benchmarks/design_families.py --null-check
	$(PY) benchmarks/uncertainty.py
	$(PY) benchmarks/connectomes.py
	$(PY) benchmarks/distances.py
	$(PY) benchmarks/index.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/fuzz.py
	$(PY) benchmarks/llm.py

mutation: $(STAMP)  # the kill rate of the suite (BENCHMARKS.md); about an hour on 2 cores
	$(PY) benchmarks/mutation.py --jobs 2

golden: $(STAMP)  # rewrite tests/golden/*.json on purpose (see tests/test_golden.py)
	$(PY) tests/test_golden.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports  # the stages' layers and no import circle (.importlinter)

clean:
	rm -rf $(VENV) demo-output bench-output .pytest_cache .ruff_cache
