"""`make demo` measured: the quickstart pipeline end to end and each stage, per instruction set (issue 37).

    .venv/bin/python bench/quickstart.py [--isa native|avx2] [--label NAME] [--set KEY=VALUE ...]

Each call is one `factory run pipelines/quickstart.yaml` in a fresh run directory (runs/bench-quickstart-ISA[-LABEL]),
nothing cached, in a process of its own. `--isa avx2` runs, on a machine that has AVX-512, the kernels an AVX2-only
CPU runs: oneDNN's ONEDNN_MAX_CPU_ISA=AVX2, PyTorch's ATEN_CPU_CAPABILITY=avx2, and FACTORY_CPU_BF16=0 (so
`dtype: auto` picks float32, as it does on such a CPU). `engine: auto` then runs the bundled teacher with llama.cpp,
as on such a CPU, with a llama-server built for AVX2 only (`factory.teachers.llamacpp_build --isa avx2`: kernels
an AVX2 CPU runs, not emulated). `--set` passes pipeline overrides (a lever to measure).

Writes one entry per (isa, label) into bench/results/quickstart.json:
- wall time and peak memory of the whole run; each stage's seconds;
- the generate stage's parts: engine start and overhead (the stage's seconds less its generation seconds),
  first token and first trace after the first request, completion tokens/s;
- the student's held-out pass@1 before and after, and the paired gain with its 95% CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "quickstart.json"
PIPELINE = REPO / "pipelines" / "quickstart.yaml"
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "FACTORY_CPU_BF16": "0"}


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def cpu() -> dict:
    from factory.core.hardware import native_bf16

    text = Path("/proc/cpuinfo").read_text()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {"model_name": name, "cores": os.cpu_count(), "native_bf16": native_bf16(text),
            "avx512": any(f.startswith("avx512") for f in flags), "machine": platform.machine()}


def isa_env(isa: str) -> dict[str, str]:
    if isa != "avx2":
        return {}
    from factory.teachers.llamacpp import SERVER_ENV
    from factory.teachers.llamacpp_build import build

    return {**AVX2, SERVER_ENV: str(build("avx2"))}


def run(run_dir: Path, isa: str, sets: list[str]) -> dict:
    env = {**os.environ, **isa_env(isa)}
    cmd = [sys.executable, "-m", "factory.cli", "run", str(PIPELINE), "--set", f"run_dir={run_dir}"]
    for s in sets:
        cmd += ["--set", s]
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2  # kB on Linux
    if done.returncode:
        raise SystemExit(f"factory run failed ({done.returncode}): see {log.name}")
    return {"wall_s": round(wall, 1), "peak_rss_gb": round(peak_gb, 2), **stages(run_dir, sets)}


def stages(run_dir: Path, sets: list[str]) -> dict:
    from factory.pipeline.load import load_pipeline

    state = json.loads((run_dir / "pipeline_state.json").read_text())
    out: dict = {"stages_s": {name: s.get("seconds") for name, s in state.items()}}
    evals = [s.get("seconds") or 0 for name, s in state.items() if name.startswith("eval.")]
    if evals:  # the eval block's instances (each eval, then their compare), as one figure beside earlier runs'
        out["stages_s"]["eval"] = round(sum(evals), 1)
    gen = json.loads((run_dir / "generate_stats.json").read_text())
    import polars as pl

    engines = pl.read_parquet(run_dir / "traces" / "*.parquet", columns=["engine"])["engine"].unique().to_list()
    out["generate"] = {"engine": ",".join(sorted(engines)), "engine_start_and_overhead_s": round(state["generate"]["seconds"] - gen["generation_seconds"], 1),
                       **{k: gen.get(k) for k in ("generation_seconds", "first_token_s", "first_sample_s",
                                                  "completion_tokens", "completion_tokens_per_s")}}
    p = load_pipeline(str(PIPELINE), [f"run_dir={run_dir}", *sets])
    out["gain"] = gain(p)
    return out


def gain(p) -> dict:
    """student-after against student-before, paired over the same problems (what the README reports)."""
    from factory.core.eval_metrics import difference
    from factory.stages.eval import result_path

    evals = dict(p.evals)
    per = {}
    for name in ("student-before", "student-after", "teacher"):
        result = json.loads(result_path(evals[name]).read_text())
        per[name] = ({q["prompt_id"]: q["metrics"]["pass@1"] for q in result["problems"]},
                     result["metrics"]["pass@1"]["mean"])
    d = difference(per["student-before"][0], per["student-after"][0], "pass@1")
    return {"before": per["student-before"][1], "after": per["student-after"][1], "teacher": per["teacher"][1],
            "delta": d["delta"], "ci": [d["ci_low"], d["ci_high"]], "p_value": d["p_value"],
            "excludes_zero": bool(d["significant"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", choices=["native", "avx2"], default="native")
    ap.add_argument("--label", default="", help="names this setting (a lever) in the results")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a pipeline override, KEY=VALUE")
    args = ap.parse_args()
    name = f"bench-quickstart-{args.isa}" + (f"-{args.label}" if args.label else "")
    entry = {"isa": args.isa, "label": args.label or "shipped", "sets": args.sets,
             "env": isa_env(args.isa), "cpu": cpu(),
             "date": time.strftime("%Y-%m-%d"), "commit": commit(), **run(REPO / "runs" / name, args.isa, args.sets)}
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {"runs": []}
    results["runs"] = [r for r in results["runs"] if (r["isa"], r["label"]) != (entry["isa"], entry["label"])]
    results["runs"].append(entry)
    RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
