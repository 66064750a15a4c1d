# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
PORT ?= 8501

.PHONY: run test test-fast screenshots bench benchmarks clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements-test.txt tools/install_learn2learn.sh tools/install_chromium.sh
	$(PY) -m pip install --quiet -r requirements-test.txt
	tools/install_learn2learn.sh $(PY)
	tools/install_chromium.sh
	touch $@

run: $(RUNTIME_STAMP)
	$(PY) -m streamlit run app.py --server.address localhost --server.port $(PORT)

test: $(TEST_STAMP)
	$(PY) -m pytest -q -ra --durations=15

# Unit tests only: seconds, no browser, no training.
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not browser and not slow"

# Re-takes README's screenshots (docs/screenshots/) in the browser tests.
screenshots: $(TEST_STAMP)
	METAVIZ_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_browser.py tests/test_browser_saliency.py

# Every benchmark, each against its peer in the same run (benchmarks/README.md), then issue 10's
# targets as one table of this run's figures (benchmarks/verdicts.py).
BENCH_RESULTS := benchmarks/last-run.jsonl
BENCH_ENV := OMP_NUM_THREADS=1 METAVIZ_BENCH_RESULTS=$(BENCH_RESULTS)
bench benchmarks: $(TEST_STAMP)
	rm -f $(BENCH_RESULTS)
	$(BENCH_ENV) $(PY) benchmarks/adaptation.py
	$(BENCH_ENV) $(PY) benchmarks/training.py
	$(BENCH_ENV) $(PY) benchmarks/pages.py --threads 1
	$(BENCH_ENV) $(PY) benchmarks/interactions.py
	$(BENCH_ENV) $(PY) benchmarks/explain.py
	$(BENCH_ENV) $(PY) benchmarks/load.py
	$(BENCH_ENV) $(PY) benchmarks/embed.py
	$(BENCH_ENV) $(PY) benchmarks/allocator.py
	$(BENCH_ENV) $(PY) benchmarks/embed_browser.py
	$(BENCH_ENV) $(PY) benchmarks/data_load.py
	$(BENCH_ENV) $(PY) benchmarks/first_page.py
	$(BENCH_ENV) $(PY) benchmarks/layers.py checkpoints/omniglot-5w1s-maml.safetensors
	$(PY) benchmarks/verdicts.py $(BENCH_RESULTS)

clean-venv:
	rm -rf $(VENV)
