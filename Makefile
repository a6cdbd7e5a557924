# The README's commands. `make setup` is idempotent: a second run takes a second when nothing changed.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/factory generate --prompts gym:chain_sum --size 12 --n 4 --max-tokens 256 \
		--teacher vllm:qwen2.5-coder-0.5b --out runs/demo
	$(VENV)/bin/factory filter runs/demo
	@echo "demo: traces in runs/demo/traces, kept and rejected traces in runs/demo/filtered (Parquet),"
	@echo "      stats in runs/demo/generate_stats.json and runs/demo/filtered/stats.json"

test: setup
	$(PY) -m ruff check factory train tests bench
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not integration"

lint: setup
	$(PY) -m ruff check factory train tests bench

bench: setup
	$(PY) bench/generate_client.py
	$(PY) bench/generate_engines.py
	$(PY) bench/filters.py
	$(PY) bench/sft.py

clean:
	rm -rf runs/demo
