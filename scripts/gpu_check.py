"""`make gpu-check`: the GPU paths, run for real on one NVIDIA GPU in a few minutes, written to
bench/results/gpu_check.json.

Parts, each a real `factory` command in a process of its own (as a pipeline runs them), timed, with the GPU's
peak memory polled from nvidia-smi while it runs:
  tests     the `gpu`-marked tests (pytest -m gpu)
  generate  vLLM on CUDA, the bundled teacher, 64 prompts x n=4
  distill   SmolLM2-135M, bf16, flash-attention (when installed), Liger, packing, 20 steps
  grpo      3 GRPO steps with vLLM colocated in the trainer
  eval      the distilled student, evaluated with vLLM
It exits non-zero if any part fails. On a machine without a GPU it says so in one line and exits 0: nothing is
pretended to have run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "gpu_check.json"
WORK = REPO / "runs" / "gpu-check"
FACTORY = [sys.executable, "-m", "factory.cli"]
sys.path.insert(0, str(REPO))

from train.checkpoints import parameter_count  # noqa: E402  (light: torch loads when it is called)

# Dense bf16 peak of the GPUs this is likely to meet (NVIDIA's datasheets, without sparsity), for the MFU estimate.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12,
                   "RTX 4090": 165e12}


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi; None where there is none (or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    res = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    names = res.stdout.strip().splitlines() if res.returncode == 0 else []
    return names[0].strip() if names else None


def peak_flops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


class MemoryPoll:
    """The GPU's peak used memory (MiB) while a part runs, from nvidia-smi every half second."""

    def __init__(self) -> None:
        self.peak, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            res = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)
            if res.returncode == 0 and res.stdout.strip():
                self.peak = max(self.peak, int(res.stdout.split()[0]))
            self.stop.wait(0.5)

    def __enter__(self) -> MemoryPoll:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_part(name: str, cmd: list[str], timeout_s: int) -> dict:
    print(f"gpu-check: {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with MemoryPoll() as mem:
        try:
            res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
            ok, tail = res.returncode == 0, (res.stdout + res.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            ok, tail = False, f"timed out after {timeout_s} s"
    part = {"ok": ok, "seconds": round(time.perf_counter() - started, 1), "peak_gpu_memory_mib": mem.peak}
    if not ok:
        part["error_tail"] = tail
    print(f"gpu-check: {name}: {'ok' if ok else 'FAILED'} in {part['seconds']} s", file=sys.stderr, flush=True)
    return part


def last_row(path: Path, key: str) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return next((r for r in reversed(rows) if key in r), {})


def distill_metrics(out: Path, gpu: str) -> dict:
    """tokens/s of training and an MFU estimate: 6 x parameters x tokens/s over the GPU's bf16 peak."""
    row = last_row(out / "train_metrics.jsonl", "loss")
    summary = json.loads((out / "distill_summary.json").read_text()) if (out / "distill_summary.json").exists() else {}
    tps = row.get("tokens_per_s")
    params = parameter_count(str(out / "final")) if (out / "final" / "config.json").exists() else None
    peak = peak_flops(gpu)
    return {"tokens_per_s": tps, "final_loss": row.get("loss"), "packing": summary.get("packing"),
            "nonpad_share": summary.get("nonpad_share"),
            "mfu": round(6 * params * tps / peak, 4) if tps and peak and params else None}


def parts(run: Path) -> list[tuple[str, list[str], int]]:
    student = run / "student" / "smollm2-135m" / "final"
    return [
        ("tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], 240),
        ("generate", [*FACTORY, "generate", "--prompts", "gym:chain_sum", "--size", "64", "--n", "4", "--teacher",
                      "vllm:qwen2.5-coder-0.5b", "--max-tokens", "512", "--out", str(run), "--no-progress",
                      "--set", "teacher.gpu_memory_utilization=0.5"], 150),
        ("filter", [*FACTORY, "filter", str(run), "--no-progress"], 60),
        ("distill", [*FACTORY, "distill", str(run), "--student", "smollm2-135m", "--max-steps", "20",
                     "--no-progress", "--set", "packing=true", "--set", "max_length=2048"], 150),
        ("grpo", [*FACTORY, "grpo", str(run), "--model", "smollm2-135m", "--prompts", "gym:chain_sum",
                  "--max-steps", "3", "--no-progress", "--set", "prompts.size=16", "--set", "num_generations=8",
                  "--set", "grad_accum=1", "--set", "max_completion_length=256", "--set", "use_vllm=true",
                  "--set", "vllm_mode=colocate", "--set", "vllm_gpu_memory_utilization=0.3"], 180),
        ("eval", [*FACTORY, "eval", "--model", str(student), "--benchmark", "gym:chain_sum", "--engine", "vllm",
                  "--n", "4", "--max-tokens", "512", "--out", str(WORK / "eval"), "--no-progress",
                  "--set", "size=32", "--set", "teacher.gpu_memory_utilization=0.5"], 120),
    ]


def main() -> int:
    gpu = gpu_name()
    if gpu is None:
        print("gpu-check: no NVIDIA GPU on this machine: nothing ran (run it where `nvidia-smi -L` lists one)")
        return 0
    shutil.rmtree(WORK, ignore_errors=True)
    run = WORK / "run"
    report: dict = {"gpu": gpu, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "parts": {}}
    for name, cmd, timeout_s in parts(run):
        part = run_part(name, cmd, timeout_s)
        if name == "generate" and part["ok"]:
            stats = json.loads((run / "generate_stats.json").read_text())
            part.update(tokens_per_s=stats.get("completion_tokens_per_s"), samples=stats.get("samples"))
        if name == "distill":
            part.update(distill_metrics(run / "student" / "smollm2-135m", gpu))
        if name == "grpo":
            row = last_row(run / "rl" / "smollm2-135m" / "rl_metrics.jsonl", "reward")
            part.update(steps=row.get("step"), reward=row.get("reward"))
        if name == "eval" and part["ok"]:
            result = json.loads(next((WORK / "eval").glob("*.json")).read_text())
            part.update(pass_at_1=result["metrics"]["pass@1"]["mean"],
                        tokens_per_s=result["generation"].get("completion_tokens_per_s"))
        report["parts"][name] = part
    report["ok"] = all(p["ok"] for p in report["parts"].values())
    report["seconds"] = round(sum(p["seconds"] for p in report["parts"].values()), 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(f"gpu-check: {'every part passed' if report['ok'] else 'FAILED'} on {gpu} in {report['seconds']} s; "
          f"wrote {OUT.relative_to(REPO)}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
