"""An OpenAI-compatible teacher that refuses, answers nonsense or drops connections: one line and a non-zero
exit, early; and a token limiter that limits tokens."""

import asyncio
import socket
import time

import pytest

from factory.cli import main
from factory.config.teacher import SamplingConfig, TeacherConfig
from factory.teachers.openai_compat import AiohttpTransport, OpenAITeacher, SampleFailure
from tests.conftest import write_jsonl


def _run(tmp_path, url, k=3, teacher="openai:fake-teacher", *extra) -> int:
    write_jsonl(tmp_path / "p.jsonl", [{"problem": f"Problem {i}", "answer": "1"} for i in range(k)])
    return main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", teacher, "--base-url", url,
                 "--n", "1", "--out", str(tmp_path / "run"), "--no-progress", "--set", "teacher.backoff_base_s=0.01",
                 *extra])


def test_uniform_refusals_stop_the_run_early(tmp_path, fake_server, capsys):
    server, url = fake_server(faults={"Problem": ["401"] * 100})
    assert _run(tmp_path, url, 60, "openai:fake-teacher", "--set", "teacher.concurrency=4") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "the first 20 requests all failed with client_error: HTTP 401" in err[-1]
    assert 20 <= len(server.log) <= 24, "stopped without sending the rest"
    assert not (tmp_path / "run").exists(), "nothing was bought: no empty run left behind"


def test_no_models_route_and_an_unknown_model_fail_fast(tmp_path, fake_server, capsys):
    server, url = fake_server(no_models=True)
    assert _run(tmp_path, url, 60, "openai:no-such-model", "--set", "teacher.concurrency=4") == 1
    err = capsys.readouterr().err
    assert "failed with client_error: HTTP 404" in err and len(server.log) <= 24


def test_a_run_where_every_sample_failed_exits_1(tmp_path, fake_server, capsys):
    _, url = fake_server(faults={"Problem": ["400"] * 3})
    assert _run(tmp_path, url, 3) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "no sample succeeded (3 failed, mostly client_error)" in err
    assert (tmp_path / "run" / "traces" / "manifest.json").exists(), "the failures are kept for inspection"


def test_html_from_models_is_one_line(tmp_path, fake_server, capsys):
    _, url = fake_server(models_html=True)
    assert _run(tmp_path, url) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not an OpenAI-compatible answer" in err and "\n" not in err


def test_connect_timeout_when_the_accept_queue_drops_connections():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: once the queue is full, new connections hang in SYN
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    cfg = TeacherConfig(engine="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.5,
                        timeout_s=600)

    async def post():
        transport = AiohttpTransport(cfg)
        try:
            await transport.post({"model": "m", "messages": []}, 1)
        finally:
            await transport.close()

    started = time.monotonic()
    with pytest.raises(SampleFailure) as failure:
        asyncio.run(post())
    assert time.monotonic() - started < 5 and failure.value.error_class in ("connection", "timeout")
    for s in [*fillers, listener]:
        s.close()


def _arrivals(server) -> list[float]:
    return sorted(e.at for e in server.log)


@pytest.mark.parametrize("used_per_request", [1500, 10])
def test_token_limit_holds_and_settles_with_reported_usage(tmp_path, fake_server, used_per_request):
    """60k tokens/min is 1,000 a second; a request estimated at 1,500 (max_tokens) is bigger than a second's
    budget. Usage as estimated: 3 requests need >= 3 s. Usage far below: refunds let them run back to back."""
    server, url = fake_server(completion_tokens=used_per_request)
    write_jsonl(tmp_path / "p.jsonl", [{"problem": f"P{i}", "answer": "1"} for i in range(3)])
    cfg = TeacherConfig(engine="openai", model="fake-teacher", base_url=url, tokens_per_minute=60_000,
                        concurrency=1)
    from factory.config.stages import PromptsConfig
    from factory.sources import load_prompts
    from factory.teachers.base import Request

    prompts = load_prompts(PromptsConfig(source=str(tmp_path / "p.jsonl")))
    teacher = OpenAITeacher(cfg, SamplingConfig(n=1, max_tokens=1500))
    done = []
    teacher.generate([Request(p, [{"role": "user", "content": p.problem}], [0]) for p in prompts],
                     lambda req, c: done.append(c))
    assert len(done) == 3 and not any(c.error for c in done)
    spread = _arrivals(server)[-1] - _arrivals(server)[0]
    if used_per_request == 1500:
        assert spread >= 0.95 * 2 * 1500 / 1000, f"3 x 1.5k tokens at 1k/s took {spread:.2f}s"
    else:
        assert spread < 1.5, f"refunded requests waited {spread:.2f}s"
