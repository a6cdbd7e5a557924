"""`teacher.batch`: OpenAI's Batch API through the openai SDK, against a local stand-in (tests/fakes/batch_server.py):
splitting, results into the cache, failed and expired requests submitted again (only those), a kill while a batch
runs, and the batch price."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from factory.cli import main
from factory.storage.shards import read_table
from tests.conftest import REPO, write_jsonl


@pytest.fixture
def batch_api():
    from tests.fakes.batch_server import FakeBatchAPI

    servers = []

    def start(**kwargs):
        server = FakeBatchAPI(**kwargs)
        servers.append(server)
        return server, server.start()

    yield start
    for s in servers:
        s.stop()


def _args(tmp_path, url, *sets, n=2):
    write_jsonl(tmp_path / "p.jsonl", [{"problem": f"Problem {i}: what is {i} + 1?", "answer": str(i + 1)}
                                       for i in range(3)])
    args = ["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
            "--base-url", url, "--n", str(n), "--out", str(tmp_path / "run"), "--no-progress",
            "--set", "teacher.batch=true", "--set", "teacher.batch_poll_s=0.02"]
    for s in sets:
        args += ["--set", s]
    return args


def _state(tmp_path) -> list[dict]:
    return json.loads((tmp_path / "run" / "batches" / "state.json").read_text())["batches"]


def _ok_rows(tmp_path) -> int:
    return sum(r["error"] is None for r in read_table(tmp_path / "run" / "traces").to_pylist())


def test_samples_are_bought_in_a_batch_at_the_batch_price(tmp_path, batch_api):
    server, url = batch_api()
    assert main(_args(tmp_path, url, "teacher.prices.output_per_mtok=1000")) == 0
    assert _ok_rows(tmp_path) == 6 and server.answered == 6 and not server.log, "no live request"
    (entry,) = _state(tmp_path)
    assert entry["batch_id"].startswith("batch_") and entry["collected"] and entry["ok"] == 6
    lines = (tmp_path / "run" / "batches" / entry["file"]).read_text().splitlines()
    assert json.loads(lines[0])["url"] == "/v1/chat/completions" and len(lines) == 6
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert stats["cost_usd"] == pytest.approx(0.5 * 6 * 20 * 1000 / 1e6) and stats["batches"] == 1
    assert main(_args(tmp_path, url)) == 0 and len(server.batches) == 1, "a rerun submits nothing"


def test_batches_are_split_under_the_request_and_byte_limits(tmp_path, batch_api):
    server, url = batch_api()
    assert main(_args(tmp_path, url, "teacher.batch_max_requests=4")) == 0
    assert [e["requests"] for e in _state(tmp_path)] == [4, 2] and _ok_rows(tmp_path) == 6
    line = len((tmp_path / "run" / "batches" / "input-00000.jsonl").read_text().splitlines()[0]) + 1
    (tmp_path / "run").rename(tmp_path / "first")
    assert main(_args(tmp_path, url, f"teacher.batch_max_mb={2.5 * line / 1e6}")) == 0
    assert [e["requests"] for e in _state(tmp_path)] == [2, 2, 2]


@pytest.mark.parametrize("plan, again", [("fail_lines:Problem 1", 2), ("expire:3", 3)])
def test_failed_and_expired_requests_are_counted_and_submitted_again(tmp_path, batch_api, plan, again):
    server, url = batch_api(plans=[plan, "ok"])
    assert main(_args(tmp_path, url)) == 0
    first, second = _state(tmp_path)
    assert first["failed"] == again and second["requests"] == again, "only the failed ones go again"
    assert _ok_rows(tmp_path) == 6 and server.answered == 6
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert sum(stats["failures_by_class"].values()) == again


def test_requests_that_fail_every_time_are_reported_not_dropped(tmp_path, batch_api, capsys):
    _, url = batch_api(plans=["fail_lines:Problem 1"] * 2)
    assert main(_args(tmp_path, url, "teacher.batch_resubmits=1")) == 0
    rows = read_table(tmp_path / "run" / "traces").to_pylist()
    failed = [r for r in rows if r["error"]]
    assert len(rows) == 6 and len(failed) == 2 and all("Problem 1" in r["problem"] for r in failed)
    assert failed[0]["error"].startswith("batch: failed in every submission (2)")


def test_a_kill_while_a_batch_runs_loses_nothing_and_pays_nothing_twice(tmp_path, batch_api):
    server, url = batch_api(plans=["hold"])
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", *_args(tmp_path, url)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not server.batches:
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(server.batches) == 1 and _state(tmp_path)[0]["batch_id"] in server.batches
    server.release()
    assert main(_args(tmp_path, url)) == 0
    assert len(server.batches) == 1 and server.answered == 6 and _ok_rows(tmp_path) == 6


def test_a_batch_whose_id_was_never_written_is_found_by_its_file(tmp_path, batch_api):
    server, url = batch_api(plans=["hold"])
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", *_args(tmp_path, url)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not server.batches:
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state_path = tmp_path / "run" / "batches" / "state.json"
    state = json.loads(state_path.read_text())
    del state["batches"][0]["batch_id"]  # as if killed between the create call and the write
    state_path.write_text(json.dumps(state))
    server.release()
    assert main(_args(tmp_path, url)) == 0
    assert len(server.batches) == 1 and _ok_rows(tmp_path) == 6


def test_a_sample_budget_limits_what_is_submitted(tmp_path, batch_api, capsys):
    server, url = batch_api()
    assert main(_args(tmp_path, url, "budget.max_samples=4")) == 0
    assert _state(tmp_path)[0]["requests"] == 4 and _ok_rows(tmp_path) == 4
    assert "budget.max_samples reached" in capsys.readouterr().err


def _kill_while_held(tmp_path, server, url, *sets, batches=1):
    """Runs generate in a child, kills it (SIGKILL) once `batches` batches exist and the held one is polled."""
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", *_args(tmp_path, url, *sets)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(server.batches) < batches:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_batch_the_provider_forgot_is_submitted_again_never_paying_twice(tmp_path, batch_api, capsys):
    server, url = batch_api(plans=["ok", "hold"])
    _kill_while_held(tmp_path, server, url, "teacher.batch_max_requests=3", batches=2)
    assert server.answered == 3 and [e.get("collected") for e in _state(tmp_path)] == [True, None]
    server.forget()  # a restarted server, another key or account: the open batch is unknown there
    assert main(_args(tmp_path, url, "teacher.batch_max_requests=3")) == 0
    err = capsys.readouterr().err
    assert "input-00001.jsonl: the provider does not know batch" in err and "its 3 sample(s)" in err
    assert server.answered == 6 and _ok_rows(tmp_path) == 6, "the 3 read before are not bought again"
    first, gone, again = _state(tmp_path)
    assert gone["gone"] and again["requests"] == 3 and again["collected"]
    assert main(_args(tmp_path, url, "teacher.batch_max_requests=3")) == 0 and server.answered == 6


def test_a_changed_endpoint_leaves_the_old_batches_and_sends_the_rest_to_the_new_one(tmp_path, batch_api, capsys):
    server, url = batch_api(plans=["ok", "hold"])
    sets = ("teacher.batch_max_requests=3", "teacher.cache_identity=model")
    _kill_while_held(tmp_path, server, url, *sets, batches=2)
    server.stop()
    other, new_url = batch_api()
    assert main(_args(tmp_path, new_url, *sets)) == 0
    assert "1 open batch(es)" in capsys.readouterr().err
    assert other.answered == 3 and _ok_rows(tmp_path) == 6, "only the samples never read go to the new server"
    assert _state(tmp_path)[1]["gone"].startswith("sent to 127.0.0.1:")


def test_an_upload_the_provider_expired_is_uploaded_again(tmp_path, batch_api, capsys):
    server, url = batch_api(plans=["hold"])
    _kill_while_held(tmp_path, server, url)
    state_path = tmp_path / "run" / "batches" / "state.json"
    state = json.loads(state_path.read_text())
    del state["batches"][0]["batch_id"]  # killed between the upload and the batch
    state_path.write_text(json.dumps(state))
    server.forget()
    server.release()
    assert main(_args(tmp_path, url)) == 0
    assert "no longer has its upload" in capsys.readouterr().err
    assert _ok_rows(tmp_path) == 6 and server.answered == 6


def test_a_provider_that_loses_every_batch_stops_the_run_in_one_line(tmp_path, batch_api, capsys):
    _, url = batch_api(plans=["vanish"] * 8)
    assert main(_args(tmp_path, url)) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 127.0.0.1:") and "lost the batches 4 times in a row" in err


def test_a_refused_key_in_batch_mode_is_one_line_and_leaves_nothing(tmp_path, batch_api, capsys, monkeypatch):
    server, url = batch_api(api_key="the-right-key-123")
    monkeypatch.setenv("OPENAI_API_KEY", "a-wrong-key-4567")
    assert main(_args(tmp_path, url)) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("HTTP 401: the API key in $OPENAI_API_KEY was refused") and "\n" not in err, err
    assert not (tmp_path / "run").exists() and not server.files and not server.batches


def test_a_sample_budget_in_batch_mode_writes_only_what_was_bought(tmp_path, batch_api, capsys):
    _, url = batch_api()
    assert main(_args(tmp_path, url, "budget.max_samples=5")) == 0
    rows = read_table(tmp_path / "run" / "traces").to_pylist()
    assert len(rows) == 5 and not any(r["error"] for r in rows), "no error row for a sample never sent"
    stats = json.loads((tmp_path / "run" / "generate_stats.json").read_text())
    assert stats["requested"] == 5 and stats["failed"] == 0 and stats["ok"] == 5
    err = capsys.readouterr().err
    assert "budget.max_samples reached: 5 samples of 5" in err and "samples failed" not in err
