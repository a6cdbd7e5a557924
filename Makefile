# The README's commands. `make setup` is idempotent: a second run takes a second when nothing changed.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo demo-rl demo-rl-control demo-prefer demo-grpo test test-fast lint bench gpu-check clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/factory run pipelines/quickstart.yaml
	@echo "demo: everything is in runs/quickstart: traces/, filtered/, card/README.md, student/smollm2-135m/final,"
	@echo "      eval/*.json and eval/compare.png; run it again and every stage is skipped (cached)"

demo-rl: demo
	$(VENV)/bin/factory run pipelines/quickstart-rl.yaml
	@echo "demo-rl: runs/quickstart-rl/rl/true-rewards/ holds summary.md, rewards.png, length.png and rollouts.jsonl;"
	@echo "         runs/quickstart-rl/eval/summary.md the held-out pass@1 before and after; next: make demo-rl-control"

demo-rl-control: demo-rl
	$(VENV)/bin/factory run pipelines/quickstart-rl-control.yaml
	@echo "demo-rl-control: runs/quickstart-rl/rl/control/ is the same run on shuffled rewards;"
	@echo "                 runs/quickstart-rl/eval/summary.md says whether the true rewards beat that control"

demo-prefer: demo
	$(VENV)/bin/factory run pipelines/quickstart-prefer.yaml
	@echo "demo-prefer: runs/quickstart-prefer/pairs/ holds the pairs and stats.json, prefer/dpo/ the DPO run (prefer.png);"
	@echo "             runs/quickstart-prefer/eval/summary.md the held-out pass@1 and tokens of the SFT and DPO students"

demo-grpo: setup
	$(VENV)/bin/factory run pipelines/grpo-cpu.yaml
	@echo "demo-grpo: runs/grpo-cpu/rl/qwen2.5-coder-0.5b/ holds rl_metrics.jsonl, rewards.png, length.png, rollouts.jsonl and final/;"
	@echo "           runs/grpo-cpu/eval/ the before/after evals, compare.png and summary.md"

test: setup
	$(PY) -m ruff check factory train tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check factory train tests bench
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/generate_client.py
	$(PY) bench/generate_engines.py
	$(PY) bench/vllm_cpu.py
	$(PY) bench/filters.py
	$(PY) bench/sft.py
	$(PY) bench/sandbox_output.py
	$(PY) bench/adaptive.py
	rm -rf runs/scale-bench
	$(PY) bench/scale.py --keep runs/scale-bench
	$(PY) bench/view.py runs/scale-bench
	$(PY) bench/ray_overhead.py

gpu-check: setup
	@bash scripts/gpu_check.sh

clean:
	rm -rf runs/demo runs/quickstart runs/quickstart-rl runs/grpo-cpu runs/scale-bench runs/gpu-check
