"""The offline vLLM engine on this CPU: bf16 against float32, compiled against eager, side by side in one run.

    .venv/bin/python bench/vllm_cpu.py [--model qwen2.5-coder-0.5b] [--size 16] [--max-tokens 64]

Each setting is one `factory generate` (n=1) in a fresh process and a fresh run directory: wall time (engine start
included) and the generation phase's completion tokens/s. Writes bench/results/vllm_cpu.json with the CPU's
model name and whether it computes bf16 natively, which decides what `dtype: auto` picks on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [("bfloat16", False), ("bfloat16", True), ("float32", True)]


def run(model: str, dtype: str, eager: bool, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, "-m", "factory.cli", "generate", "--prompts", "gym:chain_sum", "--size", str(args.size),
           "--n", "1", "--max-tokens", str(args.max_tokens), "--teacher", f"vllm:{model}", "--out", str(out),
           "--no-progress", "--set", f"teacher.dtype={dtype}", "--set", f"teacher.enforce_eager={str(eager).lower()}",
           "--set", "teacher.gpu_memory_utilization=0.5"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats = json.loads((out / "generate_stats.json").read_text())
    return {"dtype": dtype, "enforce_eager": eager, "wall_s": round(time.perf_counter() - start, 1),
            "generation_s": stats["generation_seconds"], "completion_tokens": stats["completion_tokens"],
            "tokens_per_s": stats["completion_tokens_per_s"]}


def cpu() -> dict:
    from factory.core.hardware import native_bf16

    text = Path("/proc/cpuinfo").read_text()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return {"model_name": name, "native_bf16": native_bf16(text)}


def main() -> None:
    from factory.storage.models import resolve_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    model = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(model, dtype, eager, args, Path(tmp) / f"{dtype}-{eager}") for dtype, eager in SETTINGS]
    print(f"{'dtype':>9} {'eager':>6} {'tokens':>7} {'gen s':>7} {'tok/s':>7} {'wall s':>7}")
    for r in rows:
        print(f"{r['dtype']:>9} {r['enforce_eager']!s:>6} {r['completion_tokens']:>7} {r['generation_s']:>7} "
              f"{r['tokens_per_s']:>7} {r['wall_s']:>7}")
    out = REPO / "bench" / "results" / "vllm_cpu.json"
    out.write_text(json.dumps({"model": args.model, "size": args.size, "max_tokens": args.max_tokens, "cpu": cpu(),
                               "cores": len(os.sched_getaffinity(0)), "runs": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
