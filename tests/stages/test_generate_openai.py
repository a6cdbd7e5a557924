"""`factory generate` against the fault-injecting OpenAI-compatible server: resume, faults, errors."""

import json
from pathlib import Path

import pytest

from factory.cli import main
from factory.storage.shards import read_manifest, read_table
from tests.conftest import write_jsonl


def _prompts(tmp_path: Path, k: int = 3) -> Path:
    return write_jsonl(tmp_path / "p.jsonl", [{"problem": f"Problem {i}: what is {i} + 1?", "answer": str(i + 1)}
                                              for i in range(k)])


def _generate(tmp_path, url, *extra, n=2, out="run") -> int:
    return main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                 "--base-url", url, "--n", str(n), "--out", str(tmp_path / out), "--no-progress",
                 "--set", "teacher.backoff_base_s=0.01", *extra])


def _rows(tmp_path, out="run") -> list[dict]:
    return read_table(tmp_path / out / "traces").to_pylist()


def test_traces_land_in_shards_with_the_normalised_channel(tmp_path, fake_server):
    server, url = fake_server()
    _prompts(tmp_path)
    assert _generate(tmp_path, url) == 0
    rows = _rows(tmp_path)
    assert len(rows) == 6 and {(r["prompt_id"], r["sample_index"]) for r in rows}.__len__() == 6
    r = rows[0]
    assert r["reasoning"].startswith("Let me think about: Problem 0") and r["answer"] == "The answer is \\boxed{42}."
    assert r["raw_completion"].startswith("<think>\n") and r["reasoning_source"] == "think_tags"
    assert r["finish_reason"] == "stop" and r["error"] is None and r["engine"] == "openai"
    assert json.loads(r["messages"])[0]["content"].startswith("Problem 0")
    assert server.served() == 6 and len(server.log) == 3, "native n: one request per prompt"
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert stats["ok"] == 6 and stats["requested"] == 6 and stats["completion_tokens"] == 120
    resolved = (tmp_path / "run" / "config.resolved.yaml").read_text()
    manifest = read_manifest(tmp_path / "run" / "traces")
    assert resolved.count("fingerprint") == 1 and f"fingerprint: {manifest['fingerprint']}" in resolved
    assert manifest["config"]["teacher"]["base_url"] == url and manifest["rows"] == 6


def test_reasoning_content_field_is_used(tmp_path, fake_server):
    _, url = fake_server(reasoning_field=True)
    _prompts(tmp_path, 1)
    assert _generate(tmp_path, url, n=1) == 0
    (r,) = _rows(tmp_path)
    assert r["reasoning_source"] == "reasoning_content" and r["answer"] == "The answer is \\boxed{42}."
    assert r["completion_tokens"] == 20


def test_rerun_is_free_and_raising_n_buys_only_the_new_samples(tmp_path, fake_server):
    server, url = fake_server()
    _prompts(tmp_path)
    assert _generate(tmp_path, url, n=2) == 0
    before = {(r["prompt_id"], r["sample_index"]): r["raw_completion"] for r in _rows(tmp_path)}
    assert _generate(tmp_path, url, n=2) == 0
    assert server.served() == 6, "a rerun requests nothing"
    assert _generate(tmp_path, url, n=4) == 0
    assert server.served() == 12 and all(e.n == 2 for e in server.log)
    rows = _rows(tmp_path)
    assert sorted(r["sample_index"] for r in rows) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(before[(r["prompt_id"], r["sample_index"])] == r["raw_completion"]
               for r in rows if r["sample_index"] < 2), "cached samples are reused verbatim"


def test_changing_temperature_buys_new_samples_and_keeps_the_old(tmp_path, fake_server):
    server, url = fake_server()
    _prompts(tmp_path, 2)
    assert _generate(tmp_path, url) == 0
    assert _generate(tmp_path, url, "--set", "sampling.temperature=1.0") == 0
    assert server.served() == 8
    assert {json.loads(r["sampling"])["temperature"] for r in _rows(tmp_path)} == {1.0}
    assert _generate(tmp_path, url) == 0
    assert server.served() == 8, "the T=0.6 samples were still cached"


@pytest.mark.parametrize("client", ["aiohttp", "openai-sdk"])
def test_transient_faults_are_retried_and_retry_after_is_honoured(tmp_path, fake_server, client):
    server, url = fake_server(faults={"Problem 0": ["429:0.3", "500"], "Problem 1": ["drop", "malformed", "503"],
                                      "Problem 2": ["slow:5"]})
    _prompts(tmp_path)
    assert _generate(tmp_path, url, "--set", "teacher.timeout_s=1", "--set", f"teacher.client={client}") == 0
    rows = _rows(tmp_path)
    assert all(r["error"] is None for r in rows) and len(rows) == 6
    p0 = [e for e in server.log if "Problem 0" in e.content]
    assert [e.fault for e in p0] == ["429:0.3", "500", "ok"]
    assert p0[1].at - p0[0].at >= 0.3, "waited as long as Retry-After said"
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert stats["failures_by_class"] == {"rate_limit": 1, "server_error": 2, "connection": 1, "bad_response": 1,
                                          "timeout": 1}
    assert stats["retries"] == 6


def test_persistent_failures_become_error_traces_and_are_retried_next_run(tmp_path, fake_server, capsys):
    server, url = fake_server(faults={"Problem 0": ["500"] * 3, "Problem 1": ["400"]})
    _prompts(tmp_path)
    assert _generate(tmp_path, url, "--set", "teacher.max_retries=2") == 0
    rows = {(r["problem"][:9], r["sample_index"]): r for r in _rows(tmp_path)}
    assert rows[("Problem 0", 0)]["error"].startswith("server_error: HTTP 500")
    assert rows[("Problem 1", 1)]["error"].startswith("client_error: HTTP 400"), "other 4xx: no retry"
    assert len([e for e in server.log if "Problem 1" in e.content]) == 1
    assert "4 samples failed" in capsys.readouterr().err
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert stats["failed_by_class"] == {"server_error": 2, "client_error": 2}
    assert _generate(tmp_path, url) == 0, "the faults are used up: the rerun buys only the failed samples"
    assert all(r["error"] is None for r in _rows(tmp_path))
    assert sum(e.n for e in server.log if e.fault == "ok") == 6


def test_server_without_native_n_falls_back_to_single_requests(tmp_path, fake_server):
    server, url = fake_server(support_n=False)
    _prompts(tmp_path)
    assert _generate(tmp_path, url, n=3) == 0
    assert len(_rows(tmp_path)) == 9 and all(r["error"] is None for r in _rows(tmp_path))
    server2, url2 = fake_server(reject_n=True)
    assert _generate(tmp_path, url2, n=3, out="run2") == 0
    assert len(_rows(tmp_path, "run2")) == 9 and all(e.n == 1 for e in server2.log if e.fault == "ok")


def test_truncated_samples_are_kept_and_flagged(tmp_path, fake_server):
    _, url = fake_server()
    _prompts(tmp_path, 1)
    assert _generate(tmp_path, url, "--max-tokens", "4", n=1) == 0
    (r,) = _rows(tmp_path)
    assert r["finish_reason"] == "length" and r["truncated"] and r["error"] is None


def test_cost_is_reported_when_prices_are_given(tmp_path, fake_server):
    _, url = fake_server()
    _prompts(tmp_path, 2)
    assert _generate(tmp_path, url, "--set", "teacher.prices.input_per_mtok=1",
                     "--set", "teacher.prices.output_per_mtok=2") == 0
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert stats["cost_usd"] == pytest.approx((stats["prompt_tokens"] * 1 + stats["completion_tokens"] * 2) / 1e6)


@pytest.mark.parametrize("key,setup,needle", [
    ("sk-wrong-secret", {"api_key": "right"}, "HTTP 401: the API key in $OPENAI_API_KEY was refused"),
    (None, {"api_key": "right"}, "HTTP 401: the API key in $OPENAI_API_KEY is not set"),
    ("sk-wrong-secret", {"model": "other"}, "model 'fake-teacher' is not served (served: other)"),
])
def test_preflight_errors_are_one_line_and_write_nothing(tmp_path, fake_server, capsys, monkeypatch, key, setup,
                                                          needle):
    if key:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    _, url = fake_server(**setup)
    _prompts(tmp_path)
    assert _generate(tmp_path, url) == 1
    err = capsys.readouterr().err.strip()
    assert needle in err and url in err and len(err.splitlines()) == 1 and "sk-wrong-secret" not in err
    assert not (tmp_path / "run").exists()


def test_unreachable_server(tmp_path, capsys):
    _prompts(tmp_path)
    assert _generate(tmp_path, "http://127.0.0.1:9/v1") == 1
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/v1: cannot reach the server" in err and not (tmp_path / "run").exists()


def test_bad_prompt_file_stops_before_any_request(tmp_path, fake_server, capsys):
    server, url = fake_server()
    (tmp_path / "p.jsonl").write_text('{"problem": "ok"}\n{"answer": 3}\n')
    assert _generate(tmp_path, url) == 1
    assert f"{tmp_path / 'p.jsonl'}:2: missing field" in capsys.readouterr().err
    assert server.log == [] and not (tmp_path / "run").exists()


def test_secrets_never_reach_the_run_directory(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-very-secret-123")
    _, url = fake_server(api_key="sk-very-secret-123", faults={"Problem 0": ["500"]})
    _prompts(tmp_path)
    assert _generate(tmp_path, url, "--set", "teacher.api_key_env=MY_TEACHER_KEY") == 0
    assert all(r["error"] is None for r in _rows(tmp_path))
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert b"sk-very-secret-123" not in path.read_bytes(), path


def test_rate_limit_spaces_requests(tmp_path, fake_server):
    server, url = fake_server()
    _prompts(tmp_path, 6)
    # 120 requests/minute = 2/s with a one-second burst: 2 at once, then one every 0.5 s.
    assert _generate(tmp_path, url, "--set", "teacher.requests_per_minute=120", n=1) == 0
    times = sorted(e.at for e in server.log)
    assert len(times) == 6 and times[-1] - times[0] >= 1.8
    assert read_manifest(tmp_path / "run" / "traces")["rows"] == 6


def test_damaged_cache_entries_are_bought_again(tmp_path, fake_server, capsys):
    """An entry that is `{}`, a list, not JSON, missing a field, or under a non-UTF-8 key: skipped with one warning
    and generated again; the rerun after that requests nothing."""
    server, url = fake_server()
    _prompts(tmp_path, 3)
    assert _generate(tmp_path, url, "--set", "teacher.native_n=never") == 0
    (seg,) = (tmp_path / "run" / "cache").glob("seg-*.log")
    lines = seg.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    key = [line.split(b"\t", 1)[0] for line in lines]
    lines[0] = key[0] + b"\t{}\n"
    lines[1] = key[1] + b"\t[1, 2]\n"
    lines[2] = key[2] + b'\t{"text": "a", "engine": \n'
    lines[3] = key[3] + b"\t" + lines[3].split(b"\t", 1)[1].replace(b'"created_at"', b'"created_on"')
    lines[4] = b"\xff\xfe" + key[4][2:] + b"\t" + lines[4].split(b"\t", 1)[1]
    seg.write_bytes(b"".join(lines))
    capsys.readouterr()
    before = len(server.log)
    assert _generate(tmp_path, url, "--set", "teacher.native_n=never") == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "5 damaged cache entries skipped" in err and "Traceback" not in err
    assert len(server.log) - before == 5
    assert all(r["error"] is None and r["reasoning"] for r in _rows(tmp_path))
    assert _generate(tmp_path, url, "--set", "teacher.native_n=never") == 0 and len(server.log) - before == 5
    assert "warning" not in capsys.readouterr().err, "the damaged lines were compacted away"


@pytest.mark.parametrize("transport", ["aiohttp", "openai-sdk"])
def test_a_base_url_with_a_query_keeps_it_on_every_request(tmp_path, fake_server, transport):
    """Azure-style endpoints take `?api-version=`: it was pasted before the route (`/v1?api-version=1/chat/...`)."""
    server, url = fake_server()
    _prompts(tmp_path, k=2)
    assert _generate(tmp_path, f"{url}?api-version=2024-06-01", "--set", f"teacher.client={transport}") == 0
    assert len(_rows(tmp_path)) == 4 and not any(r["error"] for r in _rows(tmp_path))
    assert server.queries and all(q == {"api-version": "2024-06-01"} for q in server.queries)
