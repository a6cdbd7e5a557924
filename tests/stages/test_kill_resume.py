"""kill -9 in the middle of `factory generate`, then the same command again: no sample lost, none bought twice."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from factory.config.stages import GenerateConfig, PromptsConfig
from factory.config.teacher import SamplingConfig, TeacherConfig
from factory.generation.plan import plan
from factory.sources import load_prompts
from factory.storage.cache import SampleCache
from factory.storage.shards import read_table
from tests.conftest import REPO, write_jsonl

N, PROMPTS = 3, 40


def _cmd(prompts: Path, url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "factory.cli", "generate", "--prompts", str(prompts), "--teacher",
            "openai:fake-teacher", "--base-url", url, "--n", str(N), "--out", str(out), "--no-progress",
            "--set", "teacher.concurrency=4"]


def _cached_per_prompt(prompts: Path, url: str, out: Path) -> Counter:
    cfg = GenerateConfig(out=str(out), prompts=PromptsConfig(source=str(prompts)), sampling=SamplingConfig(n=N),
                         teacher=TeacherConfig(engine="openai", model="fake-teacher", base_url=url))
    with SampleCache(out / "cache") as cache:
        return Counter({p.problem: sum(k in cache for k in keys)
                        for p, _, keys in plan(cfg, load_prompts(cfg.prompts))})


def test_kill_9_then_resume(tmp_path, fake_server):
    server, url = fake_server(delay_s=0.05)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"problem": f"P{i:02d} what is {i}+{i}?"} for i in range(PROMPTS)])
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cmd(prompts, url, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once a third of the samples are cached
        segs = list((out / "cache").glob("seg-*.log")) if out.exists() else []
        if segs and sum(s.read_bytes().count(b"\n") for s in segs) >= PROMPTS * N // 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "traces").exists(), "killed before the end: no shards yet"
    killed_at = time.monotonic()
    cached = _cached_per_prompt(prompts, url, out)
    assert 0 < sum(cached.values()) < PROMPTS * N

    rerun = subprocess.run(_cmd(prompts, url, out), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    second = Counter()
    for e in server.log:
        if e.at > killed_at:
            second[e.content.split("\n")[0]] += e.n
    for problem, have in cached.items():
        assert second[problem] == N - have, f"{problem}: had {have} cached, asked again for {second[problem]}"
    rows = read_table(out / "traces").to_pylist()
    assert len(rows) == PROMPTS * N and all(r["error"] is None for r in rows)
    assert len({(r["prompt_id"], r["sample_index"]) for r in rows}) == PROMPTS * N


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_filter_takes_its_workers_and_the_next_run_cleans_up(tmp_path, fake_server):
    _, url = fake_server()
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)}
                                                 for i in range(300)])
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(_cmd(prompts, url, out), env=env, check=True, capture_output=True)
    filt = [sys.executable, "-m", "factory.cli", "filter", str(out), "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(filt, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert len(workers) >= 2 and list(out.glob(".filter-*")), "the filter was killed while its workers ran"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    assert not [w for w in workers if _alive(w)], "workers die with their parent"
    subprocess.run(filt, env=env, check=True, capture_output=True)
    assert not list(out.glob(".filter-*")) and (out / "filtered" / "kept" / "manifest.json").exists()
