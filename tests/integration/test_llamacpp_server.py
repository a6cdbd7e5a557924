"""The llamacpp engine on a real llama-server, built from source here as `make setup` builds it on a CPU without
bf16 (~4 minutes on 2 cores the first time, then cached), serving the bundled student's GGUF (SmolLM2-135M,
Q4_1) as shipped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.cli import main
from factory.storage.shards import read_table
from factory.teachers.llamacpp import SERVER_ENV
from factory.teachers.llamacpp_build import build
from tests.conftest import write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Path:
    return build(progress=False)


def servers_of(pid: int) -> list[int]:
    """llama-server processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if name == "llama-server" and int(rest[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (a killed child of a dead parent may be one for a while)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_generate_on_llama_cpp_writes_traces_counts_every_choice_and_resumes(tmp_path, server, monkeypatch):
    from transformers import AutoTokenizer

    from factory.storage.models import resolve_model

    monkeypatch.setenv(SERVER_ENV, str(server))
    out = tmp_path / "run"
    args = ["generate", "--prompts", "gym:chain_sum", "--size", "4", "--teacher", "llamacpp:smollm2-135m",
            "--n", "3", "--max-tokens", "24", "--out", str(out), "--no-progress", "--set", "teacher.batch_size=4"]
    assert main(args) == 0
    rows = read_table(out / "traces").to_pylist()
    assert len(rows) == 12 and all(r["error"] is None and r["engine"] == "llamacpp" for r in rows)
    assert all(r["raw_completion"] for r in rows) and {r["finish_reason"] for r in rows} <= {"stop", "length"}
    assert not servers_of(os.getpid()), "the server stops with its teacher"
    # llama-server reports the first of n choices only; the engine counts the others from their text
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    decoded = sum(len(tokenizer(r["raw_completion"], add_special_tokens=False).input_ids) for r in rows)
    stats = json.loads((out / "generate_stats.json").read_text())
    assert abs(stats["completion_tokens"] - decoded) <= len(rows), (stats["completion_tokens"], decoded)
    assert 0 < stats["first_token_s"] <= stats["first_sample_s"] <= stats["generation_seconds"], stats
    assert main(args) == 0
    stats = json.loads((out / "generate_stats.json").read_text())
    assert (stats["cached"], stats["requested"], stats["rows"]) == (12, 0, 12)


def test_auto_evaluates_a_gguf_model_with_llama_cpp_on_a_cpu_without_bf16(tmp_path, server, monkeypatch):
    monkeypatch.setenv(SERVER_ENV, str(server))
    monkeypatch.setenv("FACTORY_CPU_BF16", "0")  # what an AVX2-only CPU reports
    out = tmp_path / "eval"
    assert main(["eval", "--model", "smollm2-135m", "--benchmark", "gym:chain_sum", "--limit", "3", "--n", "1",
                 "--max-tokens", "24", "--out", str(out), "--no-progress"]) == 0
    result = json.loads(next(out.glob("*.json")).read_text())
    assert result["engine"] == "llamacpp" and result["generation"]["requested"] == 3


def test_the_server_dies_with_a_generate_killed_by_sigkill(tmp_path, server):
    env = {**os.environ, SERVER_ENV: str(server)}
    cmd = [sys.executable, "-m", "factory.cli", "generate", "--prompts", "gym:chain_sum", "--size", "8",
           "--teacher", "llamacpp:smollm2-135m", "--max-tokens", "4000", "--out", str(tmp_path / "run"),
           "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not servers_of(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        children = servers_of(proc.pid)
        assert children, "generate started llama-server"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in children), "no server outlives its generate"


def test_a_prompt_longer_than_a_slot_fails_naming_the_setting(tmp_path, server, monkeypatch):
    monkeypatch.setenv(SERVER_ENV, str(server))
    prompts = write_jsonl(tmp_path / "long.jsonl", [{"problem": "Add these: " + " + ".join(["1"] * 2000),
                                                     "answer": "2000"}])
    out = tmp_path / "run"
    code = main(["generate", "--prompts", str(prompts), "--teacher", "llamacpp:smollm2-135m", "--n", "1",
                 "--max-tokens", "8", "--out", str(out), "--no-progress", "--set", "teacher.batch_size=2",
                 "--set", "teacher.max_retries=0"])
    assert code != 0, "no sample can succeed"
    (error,) = {r["error"] for r in read_table(out / "traces").to_pylist()}
    assert "exceeds the available context size" in error and "teacher.max_model_len" in error, error
