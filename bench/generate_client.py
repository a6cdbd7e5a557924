"""Client overhead of `factory generate` (openai engine) vs a bare aiohttp loop: the Python ceiling.

A stub server in another process answers at once with ~6k-token bodies; both clients send the same requests
at 64, 256 and 1024 in flight. Reported: samples/s, client CPU ms per request, and factory/bare ratios.
factory runs its whole stage (prompt loading, cache writes, Parquet shards), so the ratio is end to end.

    .venv/bin/python bench/generate_client.py [--requests 20000] [--levels 64,256,1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from factory.config.stages import GenerateConfig, PromptsConfig  # noqa: E402
from factory.config.teacher import SamplingConfig, TeacherConfig  # noqa: E402
from factory.stages import generate  # noqa: E402

BODY_CHARS = 24_000  # ~6k tokens of reasoning


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_stub() -> tuple[subprocess.Popen, str]:
    url_file = Path(tempfile.mkdtemp()) / "url"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", str(url_file), str(BODY_CHARS)],
                            cwd=REPO)
    for _ in range(200):
        if url_file.exists() and url_file.read_text():
            return proc, url_file.read_text()
        time.sleep(0.05)
    raise RuntimeError("stub server did not start")


def problems(k: int) -> list[str]:
    return [f"Problem {i}: compute {i} * {i + 1}." for i in range(k)]


async def bare_loop(url: str, k: int, inflight: int) -> None:
    """The ceiling: aiohttp, a worker pool, parse each JSON body, nothing else."""
    queue = list(reversed(problems(k)))

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            p = queue.pop()
            body = {"model": "fake-teacher", "messages": [{"role": "user", "content": p}], "temperature": 0.6,
                    "top_p": 0.95, "max_tokens": 8192}
            async with session.post(f"{url}/chat/completions", json=body) as resp:
                data = await resp.json()
                assert data["choices"][0]["message"]["content"]

    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(inflight)))


def run_bare(url: str, k: int, inflight: int) -> tuple[float, float]:
    c0, t0 = cpu_s(), time.perf_counter()
    asyncio.run(bare_loop(url, k, inflight))
    return time.perf_counter() - t0, cpu_s() - c0


def run_factory(url: str, k: int, inflight: int, tmp: Path) -> tuple[float, float, float]:
    prompts = tmp / f"p{inflight}.jsonl"
    prompts.write_text("".join(json.dumps({"problem": p}) + "\n" for p in problems(k)))
    cfg = GenerateConfig(out=str(tmp / f"run{inflight}"), progress=False,
                         prompts=PromptsConfig(source=str(prompts)), sampling=SamplingConfig(n=1, max_tokens=8192),
                         teacher=TeacherConfig(engine="openai", model="fake-teacher", base_url=url,
                                               concurrency=inflight))
    c0, t0 = cpu_s(), time.perf_counter()
    report = generate.run(cfg)
    return time.perf_counter() - t0, cpu_s() - c0, report.generation_seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--levels", default="64,256,1024")
    args = ap.parse_args()
    proc, url = start_stub()
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for level in [int(x) for x in args.levels.split(",")]:
                run_bare(url, 200, min(level, 200))  # warm the server's canned body and the sockets
                bw, bc = run_bare(url, args.requests, level)
                fw, fc, fg = run_factory(url, args.requests, level, Path(tmp))
                results.append({"inflight": level, "requests": args.requests,
                                "bare_samples_per_s": round(args.requests / bw, 1),
                                "factory_samples_per_s": round(args.requests / fw, 1),
                                "factory_requests_phase_per_s": round(args.requests / fg, 1),
                                "bare_cpu_ms_per_req": round(1000 * bc / args.requests, 3),
                                "factory_cpu_ms_per_req": round(1000 * fc / args.requests, 3),
                                "client_ratio": round(bw / fg, 3),  # the request loop, cache writes included
                                "stage_ratio": round(bw / fw, 3)})
    finally:
        proc.terminate()
    print("client: factory's request loop (requests, parsing, every sample cached); stage: the whole stage "
          "(prompts, requests, cache, Parquet shards); ratios are factory/bare samples/s")
    print(f"{'in flight':>9} {'bare/s':>9} {'client/s':>9} {'ratio':>6} {'stage/s':>8} {'ratio':>6} "
          f"{'bare ms/req':>12} {'factory ms/req':>15}")
    for r in results:
        print(f"{r['inflight']:>9} {r['bare_samples_per_s']:>9} {r['factory_requests_phase_per_s']:>9} "
              f"{r['client_ratio']:>6} {r['factory_samples_per_s']:>8} {r['stage_ratio']:>6} "
              f"{r['bare_cpu_ms_per_req']:>12} {r['factory_cpu_ms_per_req']:>15}")
    out = REPO / "bench" / "results" / "generate_client.json"
    out.write_text(json.dumps({"body_chars": BODY_CHARS, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
