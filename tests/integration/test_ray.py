"""`--executor ray` on a real local Ray cluster: a head (`ray start --head --num-cpus 1`) and a second node
joined to it, both on this machine. Local and Ray runs must write the same run directory; a node killed mid-run
must lose nothing and duplicate nothing once the run (or its rerun) completes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from factory.cli import main
from factory.core.processes import free_port
from factory.storage.records import TRACE_SCHEMA, Prompt, Trace
from factory.storage.rundir import RunDir
from factory.storage.shards import read_table, write_shards
from tests.conftest import python_without_the_project, write_jsonl

pytestmark = pytest.mark.ray
RAY = str(Path(sys.executable).parent / "ray")
# Ray turns token auth on by itself when it finds ~/.ray/auth_token (a local `ray.init()` writes one), and a
# driver that did not is then refused: the test cluster says what it wants, on loopback only.
AUTH = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
ENV = {**os.environ, **AUTH}


class Cluster:
    """The nodes run a python that has every dependency but not this project, as a cluster that never installed
    it: its workers import factory only from what the driver ships them (`runtime_env` py_modules)."""

    second: subprocess.Popen | None = None

    def __init__(self, python: Path) -> None:
        self.ray = [str(python), "-c", "from ray.scripts.scripts import main; main()"]
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        subprocess.run([*self.ray, "start", "--head", "--num-cpus", "1", "--port", str(self.port),
                        "--include-dashboard=false", "--disable-usage-stats"], check=True, env=ENV, cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.add_node()

    def add_node(self) -> None:
        """The second node, in a process group of its own so that it can be killed whole."""
        self.second = subprocess.Popen([*self.ray, "start", "--block", "--address", self.address, "--num-cpus", "1"],
                                       env=ENV, cwd="/", start_new_session=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.wait_for_nodes(2)

    def wait_for_nodes(self, count: int) -> None:
        """Waits on a connection of its own when the tests hold none, and drops it after: the run under test
        must make its own (`factory.executors.ray.connect`, with the code it ships)."""
        own = not ray.is_initialized()
        if own:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        try:
            for _ in range(300):
                if sum(n["Alive"] for n in ray.nodes()) == count:
                    return
                time.sleep(0.1)
            raise RuntimeError(f"the Ray cluster did not reach {count} nodes")
        finally:
            if own:
                ray.shutdown()

    def kill_second(self) -> None:
        os.killpg(self.second.pid, signal.SIGKILL)
        self.second.wait()

    def stop(self) -> None:
        ray.shutdown()
        if self.second and self.second.poll() is None:
            os.killpg(self.second.pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in AUTH}
    os.environ.update(AUTH)
    c = Cluster.__new__(Cluster)
    try:
        python = python_without_the_project(tmp_path_factory.mktemp("cluster-python"))
        assert subprocess.run([python, "-c", "import factory"], cwd="/", capture_output=True).returncode != 0
        c.__init__(python)
        yield c
    finally:
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _prompts(tmp_path: Path, count: int) -> Path:
    # The fake server always answers \boxed{42}: every third prompt is solved.
    return write_jsonl(tmp_path / "p.jsonl", [{"problem": f"Problem {i}: what is {i} + {42 - i}?",
                                               "answer": "42" if i % 3 == 0 else str(i)} for i in range(count)])


def _generate(prompts: Path, out: Path, url: str, *extra: str) -> int:
    return main(["generate", "--prompts", str(prompts), "--teacher", "openai:fake-teacher", "--base-url", url,
                 "--n", "3", "--out", str(out), "--no-progress", "--set", "teacher.concurrency=4", *extra])


def _same_traces(a: Path, b: Path) -> None:
    drop = ["created_at", "latency_s"]  # when and how fast: the only columns that differ between two runs
    left = read_table(RunDir(a).traces).drop_columns(drop)
    right = read_table(RunDir(b).traces).drop_columns(drop)
    assert left.num_rows == right.num_rows and left.equals(right)


def test_generate_on_ray_writes_what_a_local_run_writes(tmp_path, fake_server, cluster):
    prompts = _prompts(tmp_path, 24)
    faults = {"Problem 5:": ["429:0.1", "500", "ok"], "Problem 7:": ["malformed", "ok"]}
    _, local_url = fake_server(faults={k: list(v) for k, v in faults.items()})  # each server spends its script
    server, ray_url = fake_server(faults={k: list(v) for k, v in faults.items()})
    assert _generate(prompts, tmp_path / "local", local_url) == 0
    assert _generate(prompts, tmp_path / "ray", ray_url, "--executor", "ray", "--ray-address", cluster.address,
                     "--set", "executor.batch=3") == 0
    _same_traces(tmp_path / "local", tmp_path / "ray")
    stats = json.loads((tmp_path / "ray" / "generate_stats.json").read_text())
    assert stats["ok"] == 72 and stats["retries"] == 3 and stats["http_requests"] == 24
    assert stats["failures_by_class"] == {"bad_response": 1, "rate_limit": 1, "server_error": 1}
    # The actors wrote every sample, each into a segment of its own (on a loaded machine one actor may have
    # served every batch before the other started, so the number of segments is not fixed).
    segments = list(RunDir(tmp_path / "ray").cache.glob("seg-*.log"))
    assert segments and sum(len(p.read_bytes().splitlines()) for p in segments) == 72
    # a rerun on the cluster buys nothing: every sample is found in the actors' segments
    before = server.served(ok_only=False)
    assert _generate(prompts, tmp_path / "ray", ray_url, "--executor", "ray", "--ray-address", cluster.address) == 0
    assert server.served(ok_only=False) == before
    assert json.loads((tmp_path / "ray" / "generate_stats.json").read_text())["cached"] == 72


def _trace_rows() -> list[dict]:
    """30 prompts x 3 samples with exact and near duplicates, wrong answers and mixed language."""
    rows = []
    for i in range(30):
        base = " ".join(f"step {k}: we add {k * i} and {k + i} to get {k * i + k + i}." for k in range(30))
        p = Prompt(source="synthetic", task="math", problem=f"What is {i} + {i}?", reference_answer=str(2 * i))
        for s in range(3):
            text = f"Prompt {i}. " + base.replace(f"step {s}:", f"step {s} (again):") if s < 2 else f"Prompt {i}. {base}"
            if i % 5 == 0 and s == 2:
                text += " 然后我们把这些数字加在一起得到最终的答案是正确的" * 20  # mixed language
            answer = f"\\boxed{{{2 * i if (i + s) % 4 else 2 * i + 1}}}"
            rows.append(Trace(prompt=p, sample_index=s, teacher_model="t", engine="openai", sampling="{}",
                              messages="[]", reasoning=text, answer=answer, raw_completion=f"<think>{text}</think>{answer}",
                              reasoning_source="think_tags", finish_reason="stop", completion_tokens=400 + s).to_row())
    return rows


def test_filter_on_ray_keeps_what_a_local_run_keeps(tmp_path, cluster):
    rows = _trace_rows()
    for name in ("local", "ray"):
        write_shards(RunDir(tmp_path / name).traces, rows, TRACE_SCHEMA, rows_per_shard=10)
    assert main(["filter", str(tmp_path / "local"), "--no-progress", "--workers", "1"]) == 0
    assert main(["filter", str(tmp_path / "ray"), "--no-progress", "--executor", "ray", "--ray-address",
                 cluster.address, "--set", "executor.batch=2", "--set", "executor.shuffle_from=0"]) == 0
    for split in ("kept", "rejected"):
        left, right = (read_table(RunDir(tmp_path / n).filtered / split) for n in ("local", "ray"))
        assert left.num_rows and left.equals(right), split
    stats = json.loads((RunDir(tmp_path / "ray").filter_stats).read_text())
    local = json.loads((RunDir(tmp_path / "local").filter_stats).read_text())
    assert {k: v for k, v in stats.items() if "seconds" not in k and k != "rows_per_s"} == \
        {k: v for k, v in local.items() if "seconds" not in k and k != "rows_per_s"}
    assert stats["funnel"]["rejected_by"]["dedup"] > 0 and stats["funnel"]["rejected_by"]["correctness"] > 0
    assert stats["funnel"]["rejected_by"]["language"] > 0


def test_a_killed_node_loses_and_duplicates_nothing(tmp_path, fake_server, cluster):
    prompts = _prompts(tmp_path, 40)
    server, url = fake_server(delay_s=0.25)
    args = ["--executor", "ray", "--ray-address", cluster.address, "--set", "executor.batch=2",
            "--set", "executor.actors=2"]
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["rc"] = _generate(prompts, tmp_path / "run", url, *args)
        except BaseException as e:  # noqa: BLE001 - the test reports it below
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    for _ in range(600):
        if server.served() >= 30:
            break
        time.sleep(0.05)
    cluster.kill_second()  # mid-run: its actor and its in-flight requests die with it
    worker.join(timeout=240)
    assert not worker.is_alive()
    cluster.add_node()
    if outcome.get("rc") != 0:  # the run could not finish without the node: a rerun does
        assert _generate(prompts, tmp_path / "run", url, *args) == 0
    traces = read_table(RunDir(tmp_path / "run").traces).to_pylist()
    keys = [(t["prompt_id"], t["sample_index"]) for t in traces]
    assert len(traces) == 120 and len(set(keys)) == 120 and not any(t["error"] for t in traces)
    # at most the killed node's in-flight samples were bought twice (2 prompts x 3 samples per batch)
    assert server.served() <= 120 + 2 * 3 * 2


def test_hf_engine_on_ray_matches_local_and_loads_its_model_once(tmp_path, tiny_model_dir, cluster, monkeypatch):
    """The bundled-model path: our hf engine inside a Ray actor, greedy so both runs write the same text. The
    plan is cut into parts (as a million prompts are), and one actor serves them all: a local engine (a 671B
    teacher on vLLM) is loaded once per run, not once per part."""
    import factory.executors.ray

    monkeypatch.setattr(factory.executors.ray, "PLAN_PART_ROWS", 2)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"problem": f"What is {i} + 1?", "answer": str(i + 1)}
                                                 for i in range(6)])
    common = ["generate", "--prompts", str(prompts), "--teacher", f"hf:{tiny_model_dir}", "--n", "1",
              "--max-tokens", "8", "--no-progress", "--set", "sampling.temperature=0"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--ray-address",
                 cluster.address, "--set", "executor.batch=1"]) == 0
    _same_traces(tmp_path / "local", tmp_path / "ray")
    segments = list(RunDir(tmp_path / "ray").cache.glob("seg-*.log"))
    assert len(segments) == 1, "one actor (each starts a cache segment of its own) for the three parts"
    assert len(segments[0].read_bytes().splitlines()) == 6 and not list(RunDir(tmp_path / "ray").cache.glob("ray-plan-*"))
    shutil.rmtree(tmp_path / "local")


def test_eval_on_ray_scores_what_a_local_eval_scores(tmp_path, fake_server, cluster):
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"problem": f"What is {i} + {42 - i}?", "answer": "42" if i % 2
                                                    else str(i)} for i in range(8)])
    _, url = fake_server()
    common = ["eval", "--model", "fake-teacher", "--engine", "openai", "--base-url", url, "--benchmark", str(bench),
              "--n", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--ray-address", cluster.address]) == 0
    results = [json.loads(next((tmp_path / d).glob("*.json")).read_text()) for d in ("local", "ray")]
    assert results[0]["metrics"]["pass@1"] == results[1]["metrics"]["pass@1"]
    assert results[1]["metrics"]["pass@1"]["mean"] == 0.5


def test_several_teachers_on_ray_write_what_a_local_run_writes(tmp_path, fake_server, cluster):
    from factory.config.stages import GenerateConfig
    from factory.stages import generate

    prompts = _prompts(tmp_path, 6)
    servers = [fake_server(model=m) for m in ("t1", "t2")]

    def config(out: str, **executor) -> GenerateConfig:
        return GenerateConfig.model_validate({
            "out": str(tmp_path / out), "prompts": {"source": str(prompts)}, "sampling": {"n": 2},
            "progress": False, "executor": executor,
            "teachers": [{"engine": "openai", "model": m, "base_url": url} for m, (_, url) in zip(("t1", "t2"),
                                                                                            servers)]})

    generate.run(config("local"))
    served = [s.served() for s, _ in servers]
    assert served == [12, 12]
    report = generate.run(config("ray", kind="ray", address=cluster.address))
    assert [s.served() for s, _ in servers] == [24, 24] and report.samples == 24
    assert [t.teacher for t in report.by_teacher] == ["openai:t1", "openai:t2"]
    _same_traces(tmp_path / "local", tmp_path / "ray")
    generate.run(config("ray", kind="ray", address=cluster.address))
    assert [s.served() for s, _ in servers] == [24, 24], "a rerun on the cluster buys nothing from either"


def test_workers_run_the_code_the_driver_ships_them(tmp_path, fake_server, cluster):
    """A driver started outside the checkout (the project imported through its installed finder, no path to it on
    sys.path for Ray to pass on) still runs on nodes that cannot import the project: the package travels as the
    job's `runtime_env` py_modules."""
    prompts = _prompts(tmp_path, 6)
    _, url = fake_server()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-m", "factory.cli", "generate", "--prompts", str(prompts), "--teacher",
           "openai:fake-teacher", "--base-url", url, "--n", "2", "--out", str(tmp_path / "run"), "--no-progress",
           "--executor", "ray", "--ray-address", cluster.address]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_table(RunDir(tmp_path / "run").traces).num_rows == 12
