"""What `--executor ray` costs on one machine: the same work, local vs Ray, side by side in one run.

- generate: a server that answers every request after a fixed latency; the same total concurrency (local: one
  client; Ray: `actors` clients, each with its share);
- filter: the same traces (long, with near duplicates and failures), 2 worker processes vs 2 Ray tasks in flight.

Both run the real CLI in a subprocess; the Ray runs join a Ray instance the bench starts first (as a cluster
is already up when you use one), so Ray's own start-up (reported separately) is not counted.

    .venv/bin/python bench/ray_overhead.py [--requests 3000] [--latency 0.5] [--concurrency 64] [--rows 20000]

Each workload runs at two sizes (the second twice the first), so that what Ray adds per unit of work (the bar:
15%) is told apart from what it adds once per run (joining the cluster, starting actors and worker processes
that import the filters afresh), which is reported in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.filters import write_run  # noqa: E402

FACTORY = [sys.executable, "-m", "factory.cli"]
RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[3:5])} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def start_server(tmp: Path, latency: float) -> tuple[subprocess.Popen, str]:
    code = ("import sys, threading; from tests.fakes.openai_server import FakeOpenAI; "
            f"s = FakeOpenAI(delay_s={latency}); u = s.start(); open(sys.argv[1], 'w').write(u); "
            "threading.Event().wait()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp / "url")], cwd=REPO, env=ENV)
    for _ in range(400):
        if (tmp / "url").exists() and (tmp / "url").read_text():
            return proc, (tmp / "url").read_text()
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def start_ray() -> tuple[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, env=ENV, capture_output=True)
    return f"127.0.0.1:{port}", time.perf_counter() - started


def overhead(local: list[float], on_ray: list[float]) -> dict:
    """Two sizes, the second twice the first: the per-work overhead is the ratio of the increments (what Ray
    adds per unit of work), the fixed one what remains at the first size."""
    per_work = (on_ray[1] - on_ray[0]) / (local[1] - local[0]) - 1
    return {"local_s": [round(x, 1) for x in local], "ray_s": [round(x, 1) for x in on_ray],
            "overhead_at_size": [round(r / lo - 1, 3) for lo, r in zip(local, on_ray)],
            "per_work_overhead": round(per_work, 3),
            "fixed_s": round((on_ray[0] - local[0]) - per_work * local[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000, help="generate: prompts at the first size (n=2)")
    ap.add_argument("--latency", type=float, default=0.5, help="generate: the server's seconds per answer")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rows", type=int, default=20000, help="filter: traces at the first size")
    args = ap.parse_args()
    out: dict = {"cpus": os.cpu_count(), "requests": [args.requests, 2 * args.requests], "latency_s": args.latency,
                 "concurrency": args.concurrency, "rows": [args.rows, 2 * args.rows]}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        server, url = start_server(tmp, args.latency)
        address, out["ray_start_s"] = start_ray()
        try:
            times: dict[str, list[float]] = {k: [] for k in ("g-local", "g-ray", "f-local", "f-ray")}
            for size in (1, 2):
                prompts = tmp / f"p{size}.jsonl"
                prompts.write_text("".join(json.dumps({"problem": f"Problem {i}: {i} + 1?"}) + "\n"
                                           for i in range(size * args.requests)))
                gen = [*FACTORY, "generate", "--prompts", str(prompts), "--teacher", "openai:fake-teacher",
                       "--base-url", url, "--n", "2", "--no-progress",
                       "--set", f"teacher.concurrency={args.concurrency}"]
                times["g-local"].append(timed([*gen, "--out", str(tmp / f"g-local{size}")]))
                times["g-ray"].append(timed([*gen, "--out", str(tmp / f"g-ray{size}"), "--executor", "ray",
                                             "--ray-address", address, "--set", "executor.actors=2"]))
                for kind in ("local", "ray"):
                    write_run(tmp / f"f-{kind}{size}", size * args.rows, words=1500)  # bench/filters.py's traces
                times["f-local"].append(timed([*FACTORY, "filter", str(tmp / f"f-local{size}"), "--no-progress",
                                               "--workers", "2"]))
                times["f-ray"].append(timed([*FACTORY, "filter", str(tmp / f"f-ray{size}"), "--no-progress",
                                             "--executor", "ray", "--ray-address", address,
                                             "--set", "executor.actors=2"]))
            out["generate"] = overhead(times["g-local"], times["g-ray"])
            out["filter"] = overhead(times["f-local"], times["f-ray"])
        finally:
            server.terminate()
            subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True)
    print(json.dumps(out, indent=2))
    path = REPO / "bench" / "results" / "ray_overhead.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
