"""vLLM engine vs transformers engine on the bundled teacher: the same prompts, side by side in one run.

    .venv/bin/python bench/generate_engines.py [--model qwen2.5-coder-0.5b] [--size 8] [--n 4] [--max-tokens 128]

Reports completion tokens/s of the generation phase (engine start excluded) and the wall time of the whole
command (engine start included), then writes bench/results/generate_engines.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(engine: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, "-m", "factory.cli", "generate", "--prompts", "gym:chain_sum", "--size", str(args.size),
           "--n", str(args.n), "--max-tokens", str(args.max_tokens), "--teacher", f"{engine}:{args.model}",
           "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats = json.loads((out / "generate_stats.json").read_text())
    return {"engine": engine, "wall_s": round(time.perf_counter() - start, 1),
            "generation_s": stats["generation_seconds"], "completion_tokens": stats["completion_tokens"],
            "tokens_per_s": stats["completion_tokens_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(engine, args, Path(tmp) / engine) for engine in ("vllm", "hf")]
    ratio = round(rows[0]["tokens_per_s"] / max(rows[1]["tokens_per_s"], 1e-9), 2)
    print(f"{'engine':>7} {'tokens':>7} {'gen s':>7} {'tok/s':>7} {'wall s':>7}")
    for r in rows:
        print(f"{r['engine']:>7} {r['completion_tokens']:>7} {r['generation_s']:>7} {r['tokens_per_s']:>7} {r['wall_s']:>7}")
    print(f"vllm / hf tokens/s: {ratio}x")
    out = REPO / "bench" / "results" / "generate_engines.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "size": args.size, "n": args.n, "max_tokens": args.max_tokens,
                               "results": rows, "vllm_over_hf": ratio}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
