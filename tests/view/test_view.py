"""`factory view` through Flask's test client: what each page shows, escaping, filters, read-only."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from factory.storage.rundir import RunDir
from factory.view import create_app


@pytest.fixture
def client(view_run):
    return create_app(view_run).test_client()


def _text(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def test_the_funnel_shows_the_stats_and_links_each_filter_to_its_rejects(client, view_run):
    stats = json.loads(RunDir(view_run).filter_stats.read_text())
    page = _text(client.get("/"))
    assert f"{stats['funnel']['in']} traces in" in page and f"{stats['funnel']['kept']} kept" in page
    assert stats["funnel"]["rejected_by"]["language"] > 0
    assert '/traces?split=rejected&amp;reason=language' in page
    assert "language: mixed" in page or "language:" in page


def test_the_table_filters_by_reason_and_pages(client, view_run):
    stats = json.loads(RunDir(view_run).filter_stats.read_text())
    page = _text(client.get("/traces?split=rejected&reason=language"))
    n = stats["funnel"]["rejected_by"]["language"]
    assert f"{n} traces match" in page and page.count('class="rejected">language<') == n
    everything = _text(client.get("/traces"))
    assert f"{stats['funnel']['in']} traces match" in everything
    kept = _text(client.get("/traces?split=kept&min_tokens=330"))
    assert "rejected" not in re.sub(r"<option.*?</option>", "", kept).split('id="traces"')[1].split("</table>")[0]


def test_search_finds_text_in_the_reasoning_as_a_literal(client):
    page = _text(client.get("/traces", query_string={"q": "然后我们"}))
    assert "traces match" in page and "0 traces match" not in page
    assert "0 traces match" in _text(client.get("/traces", query_string={"q": "step (1"}))  # not a regex


def test_a_trace_shows_its_verdicts_and_its_prompts_other_samples(client, view_run):
    page = _text(client.get("/traces?split=rejected&reason=correctness"))
    href = re.search(r'href="(/trace/[0-9a-f]+/\d+)"', page).group(1)
    trace = _text(client.get(href))
    assert "rejected by correctness" in trace and 'class="fail">fail<' in trace
    assert trace.count('class="card') == 3, "the prompt's three samples side by side"
    assert "&lt;think&gt;" in trace and "&lt;/think&gt;" in trace
    assert client.get("/trace/nope/0").status_code == 404


def test_model_output_is_text_never_markup(client):
    page = _text(client.get("/traces", query_string={"q": "pwned"}))
    href = re.search(r'href="(/trace/[0-9a-f]+/\d+)"', page).group(1)
    trace = _text(client.get(href))
    assert "<script>window.pwned" not in trace and "&lt;script&gt;window.pwned" in trace
    assert "<img src=x" not in trace and "&lt;img src=x onerror=" in trace
    assert 'href="javascript:' not in trace and "javascript:window.pwned" in trace
    assert "<script" not in page.split("</header>")[1]


def test_the_viewer_writes_nothing(view_run, client):
    def snapshot():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(view_run.rglob("*")) if p.is_file()}

    before = snapshot()
    for url in ("/", "/traces", "/traces?split=kept&page=2", "/traces?q=step"):
        client.get(url)
    assert snapshot() == before


def test_the_eval_pages_show_metrics_problems_and_the_chart(client):
    index = _text(client.get("/"))
    assert 'href="/evals/after-gym-chain_sum"' in index and "0.156" in index
    page = _text(client.get("/evals/after-gym-chain_sum"))
    assert "pass@1" in page and page.count("<tr><td><pre>") == 40 and 'src="/evals/compare.png"' in page
    png = client.get("/evals/compare.png")
    assert png.status_code == 200 and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/evals/nope").status_code == 404


def test_the_cli_serves_on_loopback_and_names_a_missing_run(view_run, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "view", str(view_run), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "Funnel" in page
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert f"http://127.0.0.1:{port}/" in out and "read-only" in out
    missing = subprocess.run([sys.executable, "-m", "factory.cli", "view", str(tmp_path / "nope")], env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "nope: no such run directory" in missing.stderr


def test_a_run_not_yet_filtered_shows_its_traces(tmp_path):
    from factory.storage.records import TRACE_SCHEMA
    from factory.storage.shards import write_shards
    from tests.view.conftest import trace_rows

    write_shards(RunDir(tmp_path / "run").traces, trace_rows(4), TRACE_SCHEMA)
    client = create_app(tmp_path / "run").test_client()
    assert "has not been filtered yet" in _text(client.get("/"))
    assert "12 traces match" in _text(client.get("/traces"))
    href = re.search(r'href="(/trace/[0-9a-f]+/\d+)"', _text(client.get("/traces"))).group(1)
    assert "not filtered yet" in _text(client.get(href))


def test_the_funnel_follows_the_runs_filter_order_as_the_card_does(client, view_run):
    """stats.json's keys are sorted on disk; the funnel reads the run's order from `order`, as the card does."""
    stats = json.loads(RunDir(view_run).filter_stats.read_text())
    assert stats["order"][:2] == ["format", "length"] and stats["order"] != sorted(stats["order"])
    page = _text(client.get("/"))
    positions = [page.index(f"/traces?split=rejected&amp;reason={name}") for name in stats["order"]
                 if stats["funnel"]["rejected_by"][name]]
    assert positions == sorted(positions)


def test_pages_past_the_end_an_empty_run_and_a_damaged_stats_file_are_pages_not_500s(view_run, tmp_path):
    client = create_app(view_run).test_client()
    last = _text(client.get("/traces?page=4611686018427387904"))  # past the end: the last page, with its rows
    assert "36 traces match" in last and last.count('href="/trace/') >= 36
    empty = create_app(tmp_path / "nothing").test_client()
    assert "0 traces match" in _text(empty.get("/traces")) and empty.get("/").status_code == 200
    assert empty.get("/trace/abc/0").status_code == 404
    import shutil

    damaged = shutil.copytree(view_run, tmp_path / "damaged")
    RunDir(damaged).filter_stats.write_text('{"funnel": ')
    resp = create_app(damaged).test_client().get("/")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 500 and "This run cannot be read" in page and "stats.json" in page
    assert "Traceback" not in page


def test_the_pairs_are_listed_by_kind_and_a_pair_shows_its_two_sides(client, view_run):
    stats = json.loads((RunDir(view_run).pairs / "stats.json").read_text())
    assert stats["by_kind"]["correct_vs_wrong"] == 12 and stats["by_kind"]["correct_vs_flawed"] > 0
    page = _text(client.get("/"))
    assert f"{stats['pairs']} pairs</a>" in page and "/pairs?kind=correct_vs_flawed" in page
    listing = _text(client.get("/pairs?kind=correct_vs_wrong"))
    assert "12 pairs." in listing and "correctness" in listing and "correct_vs_flawed</td>" not in listing
    index = int(re.search(r'href="/pair/(\d+)"', listing).group(1))
    pair = _text(client.get(f"/pair/{index}"))
    assert 'id="chosen"' in pair and 'id="rejected"' in pair and "wrong_answer" in pair
    assert "&lt;think&gt;" in pair and "<think>" not in pair  # the sides' text, escaped
    assert client.get("/pair/999999").status_code == 404


def test_a_pairs_hostile_text_is_shown_never_run(client):
    hostile = [i for i in range(40) if "pwned" in client.get(f"/pair/{i}").get_data(as_text=True)]
    assert hostile, "the hostile prompt's pairs are there"
    page = _text(client.get(f"/pair/{hostile[0]}"))
    assert "<script>" not in page and "&lt;script&gt;" in page and 'onerror="' not in page
