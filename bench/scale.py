"""A million samples on one machine: `factory generate` (n=4 over 250k prompts) against a local
OpenAI-compatible server that answers at once, then `factory filter` on the result; peak RSS and wall time of
each, measured on the real CLI in a subprocess (`/usr/bin/time`'s maximum resident set, which covers the
stage's worker processes too).

    .venv/bin/python bench/scale.py                 # the full run: 250,000 prompts x 4 = 1,000,000 samples
    .venv/bin/python bench/scale.py --prompts 5000  # a quick one

The server is tests/fakes/openai_server.py in a process of its own (aiohttp, one core); every prompt gets
distinct traces whose boxed answer is right for half the prompts, so correctness, dedup and selection all
have work to do. Results: bench/results/scale.json (full runs only, unless --out says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACTORY = [sys.executable, "-m", "factory.cli"]


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    url_file = tmp / "url"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", str(url_file)], cwd=REPO)
    for _ in range(400):
        if url_file.exists() and url_file.read_text():
            return proc, url_file.read_text()
        time.sleep(0.05)
    raise RuntimeError("the local server did not start")


def write_prompts(path: Path, count: int) -> None:
    with open(path, "w") as f:
        for i in range(count):
            answer = "42" if i % 2 == 0 else str(i)  # the server always answers 42: half the prompts are solved
            f.write(json.dumps({"problem": f"Problem {i}: what is {i} + {42 - i}?", "answer": answer}) + "\n")


def timed(cmd: list[str], log: Path) -> dict:
    """Runs a stage under /usr/bin/time -v: wall seconds and the peak RSS (its own or any waited-for child's)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)}).returncode
    wall = time.perf_counter() - started
    text = log.read_text()
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[2:4])} failed (exit {rc}); see {log}:\n{text[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"seconds": round(wall, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=250_000)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--out", default=None, help="results file (default: bench/results/scale.json for a full run)")
    ap.add_argument("--keep", default=None, help="keep the run directory here (e.g. for bench/view.py)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("SCALE_TMP")) as tmp_name:
        tmp = Path(tmp_name)
        write_prompts(tmp / "prompts.jsonl", args.prompts)
        server, url = start_server(tmp)
        run = tmp / "run"
        try:
            gen = timed([*FACTORY, "generate", "--prompts", str(tmp / "prompts.jsonl"), "--out", str(run),
                         "--teacher", "openai:fake-teacher", "--base-url", url, "--n", str(args.n), "--no-progress",
                         "--set", f"teacher.concurrency={args.concurrency}"],
                        tmp / "generate.log")
        finally:
            server.terminate()
        filt = timed([*FACTORY, "filter", str(run), "--no-progress"], tmp / "filter.log")
        gstats = json.loads((run / "generate_stats.json").read_text())
        fstats = json.loads((run / "filtered" / "stats.json").read_text())
        disk_mb = sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 2**20
        if args.keep:
            shutil.copytree(run, args.keep, dirs_exist_ok=True)
    samples = args.prompts * args.n
    result = {
        "prompts": args.prompts, "n": args.n, "samples": samples, "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "generate": {**gen, "samples_per_s": round(samples / gen["seconds"], 1), "ok": gstats["ok"],
                     "failed": gstats["failed"]},
        "filter": {**filt, "rows_per_s": round(samples / filt["seconds"], 1), "kept": fstats["funnel"]["kept"],
                   "rejected_by": fstats["funnel"]["rejected_by"]},
        "run_dir_mb": round(disk_mb, 1),
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out) if args.out else (REPO / "bench/results/scale.json" if args.prompts >= 250_000 else None)
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
