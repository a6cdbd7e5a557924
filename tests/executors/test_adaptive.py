"""Adaptive rejection sampling and budgets, against a local teacher of known pass rates (the fake server answers a
prompt right with the chance it is given): what is bought, what is written, what a rerun buys."""

import json

import pytest

from factory.cli import main
from factory.config.stages import GenerateConfig
from factory.storage.shards import read_table
from tests.conftest import write_jsonl

EASY, HARD, HALF = "Problem 0: what is 1 + 1?", "Problem 1: what is 2 + 2?", "Problem 2: what is 3 + 3?"


def _server(fake_server, rates: dict[str, float]):
    answers = {EASY: "2", HARD: "4", HALF: "6"}
    return fake_server(correct={p: (answers[p], r) for p, r in rates.items()})


def _generate(tmp_path, url, rates, *sets, out="run") -> int:
    answers = {EASY: "2", HARD: "4", HALF: "6"}
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, "answer": answers[p]} for p in rates])
    args = ["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
            "--base-url", url, "--out", str(tmp_path / out), "--no-progress",
            "--set", "sampling.adaptive.workers=1"]
    for s in sets:
        args += ["--set", s]
    return main(args)


def _samples(tmp_path, out="run") -> dict[str, int]:
    rows = read_table(tmp_path / out / "traces").to_pylist()
    return {p: sum(r["problem"] == p for r in rows) for p in {r["problem"] for r in rows}}


def _stats(tmp_path, out="run") -> dict:
    return json.loads((tmp_path / out / "generate_stats.json").read_text())


ADAPTIVE = ["sampling.adaptive.enabled=true", "sampling.adaptive.first_n=2", "sampling.adaptive.until_kept=2",
            "sampling.adaptive.max_n=8"]


def test_easy_prompts_stop_early_and_hard_ones_get_max_n(tmp_path, fake_server):
    rates = {EASY: 1.0, HARD: 0.0}
    server, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE) == 0
    assert _samples(tmp_path) == {EASY: 2, HARD: 8}
    a = _stats(tmp_path)["adaptive"]
    assert a["samples_bought"] == 10 and a["samples_fixed_max_n"] == 16 and a["saved_share"] == 0.375
    assert a["prompts_by_status"] == {"reached": 1, "too_hard": 1}
    assert a["samples_per_prompt"] == {"2": 1, "8": 1} and a["verified_per_prompt"] == {"0": 1, "2": 1}
    assert [r["prompts"] for r in a["rounds"]][0] == 2 and a["rounds"][-1]["prompts"] == 1
    assert a["completion_tokens_saved"] == 6 * 20
    assert server.served() == 10


def test_a_rerun_buys_nothing_and_a_larger_max_n_buys_only_the_difference(tmp_path, fake_server):
    rates = {EASY: 1.0, HARD: 0.0}
    server, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE) == 0
    first = _stats(tmp_path)["adaptive"]
    assert _generate(tmp_path, url, rates, *ADAPTIVE) == 0
    assert server.served() == 10, "the rounds replay from the cache"
    again = _stats(tmp_path)
    assert again["adaptive"]["samples_per_prompt"] == first["samples_per_prompt"] and again["requested"] == 0
    assert _generate(tmp_path, url, rates, *ADAPTIVE, "sampling.adaptive.max_n=12") == 0
    assert server.served() == 14 and _samples(tmp_path) == {EASY: 2, HARD: 12}
    # the samples are the ones a fixed n uses: n=12 buys only the easy prompt's other 10
    assert _generate(tmp_path, url, rates, "sampling.n=12") == 0
    assert server.served() == 24 and _samples(tmp_path) == {EASY: 12, HARD: 12}


def test_give_up_after_stops_prompts_with_nothing_verified_early(tmp_path, fake_server):
    rates = {EASY: 1.0, HARD: 0.0, HALF: 0.5}
    server, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE, "sampling.adaptive.give_up_after=4") == 0
    assert _samples(tmp_path)[HARD] == 4 and _samples(tmp_path)[EASY] == 2
    assert _stats(tmp_path)["adaptive"]["prompts_by_status"]["too_hard"] == 1


def test_prop_to_difficulty_asks_more_of_harder_prompts(tmp_path, fake_server):
    rates = {EASY: 1.0, HARD: 0.0}
    _, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE, "sampling.adaptive.policy=prop_to_difficulty") == 0
    a = _stats(tmp_path)["adaptive"]
    # hardness 0 and 1 (mean 0.5): targets 1 and 4 verified traces
    assert a["target_per_prompt"] == {"1": 1, "4": 1}
    assert _samples(tmp_path) == {EASY: 2, HARD: 8}


def test_stop_easy_gives_up_prompts_that_pass_every_first_sample(tmp_path, fake_server):
    rates = {EASY: 1.0, HALF: 0.5}
    _, url = _server(fake_server, rates)
    sets = [*ADAPTIVE, "sampling.adaptive.until_kept=3"]
    assert _generate(tmp_path, url, rates, *sets, out="plain") == 0
    assert _samples(tmp_path, "plain")[EASY] > 2, "without stop_easy it goes on to 3 verified"
    assert _generate(tmp_path, url, rates, *sets, "sampling.adaptive.stop_easy=true", out="easy") == 0
    assert _samples(tmp_path, "easy")[EASY] == 2
    assert _stats(tmp_path, "easy")["adaptive"]["prompts_by_status"]["too_easy"] == 1


def test_the_filter_stage_sees_the_same_verdicts(tmp_path, fake_server):
    rates = {EASY: 1.0, HARD: 0.0, HALF: 0.5}
    _, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE) == 0
    assert main(["filter", str(tmp_path / "run"), "--no-progress"]) == 0
    kept = read_table(tmp_path / "run" / "filtered" / "kept").to_pylist()
    verified = _stats(tmp_path)["adaptive"]["verified_per_prompt"]
    assert len(kept) == sum(int(k) * v for k, v in verified.items())


def test_a_budget_stops_the_run_and_a_larger_one_goes_on(tmp_path, fake_server, capsys):
    rates = {EASY: 1.0, HARD: 0.0, HALF: 0.5}
    server, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, "sampling.n=4", "budget.max_samples=5") == 0
    assert "budget.max_samples reached: 5 samples of 5" in capsys.readouterr().err
    assert sum(_samples(tmp_path).values()) == 5 and server.served() == 5
    assert _stats(tmp_path)["stopped_by"].startswith("budget.max_samples")
    assert _stats(tmp_path)["requested"] == 5, "what was bought, not the 12 planned"
    assert _generate(tmp_path, url, rates, "sampling.n=4", "budget.max_samples=20") == 0
    assert sum(_samples(tmp_path).values()) == 12 and server.served() == 12
    assert "stopped_by" not in _stats(tmp_path)


@pytest.mark.parametrize("budget", ["budget.max_output_tokens=50", "budget.max_usd=50"])
def test_token_and_dollar_budgets_stop_the_requests_after_they_are_reached(tmp_path, fake_server, capsys, budget):
    rates = {EASY: 1.0, HARD: 0.0, HALF: 0.5}
    server, url = _server(fake_server, rates)
    sets = ["sampling.n=2", "teacher.concurrency=1", budget,
            "teacher.prices.output_per_mtok=1000000"]  # $1 a token: 20 tokens, $20 a sample
    assert _generate(tmp_path, url, rates, *sets) == 0
    # checked before each request (a prompt's 2 samples): 40 tokens ($40) leave room, 80 ($80) do not
    assert sum(_samples(tmp_path).values()) == 4 == server.served()
    assert budget.split("=")[0] + " reached" in capsys.readouterr().err
    assert _generate(tmp_path, url, rates, *sets[:-2], "teacher.prices.output_per_mtok=1000000",
                     budget.replace("=50", "=1000")) == 0
    assert sum(_samples(tmp_path).values()) == 6 == server.served(), "a larger budget buys only the rest"


def test_a_budget_ends_adaptive_rounds(tmp_path, fake_server):
    rates = {EASY: 1.0, HARD: 0.0}
    server, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE, "budget.max_samples=6") == 0
    assert server.served() == 6 and _stats(tmp_path)["adaptive"]["prompts_by_status"] == {"reached": 1,
                                                                                           "budget": 1}


@pytest.mark.parametrize("sets, message", [
    ({"sampling": {"adaptive": {"first_n": 8, "max_n": 4}}}, "first_n (8) is more than max_n (4)"),
    ({"sampling": {"adaptive": {"filters": ["format"]}}}, "filters must include correctness"),
    ({"sampling": {"adaptive": {"give_up_after": 32}}}, "give_up_after (32) must lie between first_n (2) and max_n"),
    ({"sampling": {"adaptive": {"filters": ["correctness", "judge"]}}}, "'judge' cannot verify a sample"),
    ({"budget": {"max_usd": 5}}, "budget.max_usd needs teacher.prices"),
    ({"executor": {"kind": "ray"}, "budget": {"max_samples": 5}}, "run on the local executor"),
    ({"teacher": {"batch": True}}, "teacher.batch is for the openai engine .* not auto"),
    ({"teacher": {"engine": "openai", "batch": True}, "budget": {"max_usd": 5}}, "budget.max_usd needs"),
    ({"teacher": {"engine": "openai", "batch": True, "prices": {}}, "sampling": {"adaptive": {"enabled": True}}},
     "teacher.batch buys a batch whole"),
])
def test_settings_that_cannot_work_are_refused(sets, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GenerateConfig.model_validate(sets)


def test_bad_verification_settings_name_the_field(tmp_path, fake_server, capsys):
    rates = {EASY: 1.0}
    server, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE, "sampling.adaptive.settings.length.max_tokens=-3") == 1
    assert "sampling.adaptive.settings" in capsys.readouterr().err and server.served() == 0


def test_the_card_and_the_viewer_show_what_adaptive_sampling_bought(tmp_path, fake_server):
    from factory.view import create_app

    rates = {EASY: 1.0, HARD: 0.0, HALF: 0.5}
    _, url = _server(fake_server, rates)
    assert _generate(tmp_path, url, rates, *ADAPTIVE, "teacher.prices.output_per_mtok=2") == 0
    run = tmp_path / "run"
    assert main(["filter", str(run), "--no-progress"]) == 0 and main(["card", str(run)]) == 0
    a = _stats(tmp_path)["adaptive"]
    card = (run / "card" / "README.md").read_text()
    assert "## Adaptive rejection sampling" in card and (run / "card" / "assets" / "adaptive.png").stat().st_size
    assert f"| samples bought | {a['samples_bought']} |" in card
    assert f"| a fixed n = 8 would buy | 24 ({100 * a['saved_share']:.0f}% saved) |" in card
    assert "| prompts too hard | 1 |" in card and "cost saved (USD)" in card
    page = create_app(run).test_client().get("/").get_data(as_text=True)
    assert "Adaptive sampling" in page and "samples bought per prompt" in page
    assert f'aria-label="8: {a["samples_per_prompt"]["8"]} prompts"' in page


def test_kill_9_in_a_round_then_resume_buys_each_sample_once(tmp_path, fake_server):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    problems = {f"Problem {i}: what is {i} + 0?": (str(i), 1.0 if i % 2 else 0.0) for i in range(20)}
    server, url = fake_server(correct=problems, delay_s=0.05)
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, "answer": a} for p, (a, _) in problems.items()])
    args = ["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher", "--base-url",
            url, "--out", str(tmp_path / "run"), "--no-progress", "--set", "teacher.concurrency=4",
            "--set", "teacher.native_n=never", "--set", "sampling.adaptive.workers=1"]
    for s in [*ADAPTIVE, "sampling.adaptive.max_n=6"]:
        args += ["--set", s]
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cache, deadline = tmp_path / "run" / "cache", time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(s.read_bytes().count(b"\n") for s in cache.glob("seg-*.log")) >= 15:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic()
    cached = sum(s.read_bytes().count(b"\n") for s in cache.glob("seg-*.log"))
    assert 0 < cached < 80
    assert main(args) == 0
    again = sum(e.n for e in server.log if e.at > killed_at)
    assert again == 80 - cached, "the rerun buys exactly what the killed run had not cached"
    assert sum(_samples(tmp_path).values()) == 80
    assert _stats(tmp_path)["adaptive"]["prompts_by_status"] == {"reached": 10, "too_hard": 10}


@pytest.mark.parametrize("budget, limit", [("budget.max_output_tokens=200", 200), ("budget.max_usd=200", 200)])
def test_budgets_hold_at_full_concurrency(tmp_path, fake_server, capsys, budget, limit):
    """Issue 35: 30 prompts at concurrency 256 bought 3,480 tokens on a budget of 200. Each request now reserves
    its worst case (max_tokens, priced) before it goes out: the run passes the budget by at most one request's
    worst case, and its last line says what was really bought."""
    problems = [f"Problem {i}: what is {i} + {i}?" for i in range(30)]
    server, url = fake_server(correct={p: (str(2 * i), 1.0) for i, p in enumerate(problems)})
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, "answer": str(2 * i)} for i, p in enumerate(problems)])
    worst = 40  # tokens a request may write (n=1): the fake teacher writes 20 a sample
    assert main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                 "--base-url", url, "--out", str(tmp_path / "run"), "--no-progress", "--set", "sampling.n=1",
                 "--set", f"sampling.max_tokens={worst}", "--set", "teacher.concurrency=256", "--set", budget,
                 "--set", "teacher.prices.output_per_mtok=1000000"]) == 0  # $1 a token
    rows = read_table(tmp_path / "run" / "traces").to_pylist()
    bought = sum(r["completion_tokens"] for r in rows if not r["error"])
    assert limit <= bought <= limit + worst and server.served() == len(rows) < 30
    name = budget.split("=")[0]
    said = f"{bought:,} completion tokens bought of 200" if "tokens" in name else f"${bought:,.4f} bought of $200.00"
    assert f"{name} reached: {said}" in capsys.readouterr().err
    assert _stats(tmp_path)["stopped_by"] == f"{name} reached: {said}"
