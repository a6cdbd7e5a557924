"""The judge filter: verdict parsing, and the stage against a scripted judge (the fault-injecting server)."""

from __future__ import annotations

import json

import pytest

from factory.cli import main
from factory.filters.judge import judge_prompt, parse_verdict
from factory.filters.params import JudgeParams
from factory.rundir import RunDir
from factory.shards import read_table
from tests.conftest import write_jsonl


def test_the_last_verdict_line_decides_and_the_reasoning_is_ignored():
    p = JudgeParams(mode="always")
    assert parse_verdict("<think>VERDICT: no</think>Same value. VERDICT: yes", p).status == "pass"
    v = parse_verdict("They differ.\nVERDICT: **No**", p)
    assert v.status == "fail" and v.reason == "judge_rejected" and "They differ" in v.details["rationale"]
    rubric = JudgeParams(mode="always", template="rubric", threshold=7)
    assert parse_verdict("Fine work.\nSCORE: 8", rubric).status == "pass"
    low = parse_verdict("Sloppy.\nSCORE: 4", rubric)
    assert low.status == "fail" and low.reason == "judge_low_score" and low.score == 4.0


def test_an_answer_without_a_verdict_is_a_judge_error_or_kept_unverified():
    assert parse_verdict("I think they match", JudgeParams(mode="always")).reason == "judge_error"
    kept = parse_verdict("I think they match", JudgeParams(mode="always", on_error="keep"))
    assert kept.status == "skip" and kept.ok and kept.reason == "unverified: judge_error"


def test_trace_text_that_looks_like_a_placeholder_stays_text():
    row = {"problem": "Say {answer}", "reference_answer": "7", "reasoning": "r", "answer": "{reference}"}
    prompt = judge_prompt(row, JudgeParams(mode="always"))
    assert "Say {answer}" in prompt and "Student's final answer:\n{reference}" in prompt


PROBLEMS = [("Prove that the sum of two even numbers is even.", None),  # no reference: the judge decides
            ("Explain why the sky is blue.", None),
            ("Name a prime larger than 10.", None),
            ("What is 40 + 2?", "42")]  # verifiable: correctness decides, the judge is not asked in fallback


@pytest.fixture
def run_dir(tmp_path, fake_server):
    _, url = fake_server()
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, **({"answer": a} if a else {})} for p, a in PROBLEMS])
    out = tmp_path / "run"
    assert main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                 "--base-url", url, "--n", "1", "--out", str(out), "--no-progress"]) == 0
    return out


def _filter(run_dir, judge_url, *extra):
    return main(["filter", str(run_dir), "--no-progress", "--workers", "1", "--set", "judge.mode=fallback",
                 "--set", "judge.teacher.engine=openai", "--set", "judge.teacher.model=fake-teacher",
                 "--set", f"judge.teacher.base_url={judge_url}", "--set", "judge.teacher.max_retries=0",
                 "--set", "judge.teacher.prices={input_per_mtok: 1.0, output_per_mtok: 2.0}", *extra])


def _rows(run_dir):
    rows = read_table(RunDir(run_dir).kept).to_pylist() + read_table(RunDir(run_dir).rejected).to_pylist()
    return {r["problem"][:12]: r for r in rows}


def test_the_judge_decides_unverifiable_rows_and_a_rerun_calls_nothing(run_dir, fake_server):
    judge, url = fake_server(replies={"two even": ["Both are 2k: even. VERDICT: yes"],
                                      "sky is blue": ["Not an explanation. VERDICT: no"],
                                      "prime larger": ["It seems fine"]})  # no verdict line
    assert _filter(run_dir, url) == 0
    rows = _rows(run_dir)
    assert rows["Prove that t"]["kept"] and json.loads(rows["Prove that t"]["verdicts"])["judge"]["ok"]
    assert rows["Explain why "]["reject_reason"] == "judge"
    assert json.loads(rows["Explain why "]["verdicts"])["judge"]["reason"] == "judge_rejected"
    assert rows["Name a prime"]["reject_reason"] == "judge"
    assert json.loads(rows["Name a prime"]["verdicts"])["judge"]["reason"] == "judge_error"
    assert "judge" not in json.loads(rows["What is 40 +"]["verdicts"]), "verifiable: not sent to the judge"
    stats = json.loads(RunDir(run_dir).filter_stats.read_text())
    assert stats["judge"]["requested"] == 3 and stats["judge"]["from_cache"] == 0
    assert stats["judge"]["completion_tokens"] == 60 and stats["judge"]["cost_usd"] > 0
    assert stats["funnel"]["rejected_by"]["judge"] == 2
    asked = judge.served(ok_only=False)
    assert _filter(run_dir, url) == 0  # the same judge, template and traces: all from the cache
    assert judge.served(ok_only=False) == asked
    assert json.loads(RunDir(run_dir).filter_stats.read_text())["judge"]["from_cache"] == 3


def test_a_failing_judge_rejects_or_keeps_and_never_crashes_the_stage(run_dir, fake_server):
    _, url = fake_server(faults={"": ["500"] * 20})  # every request fails
    assert _filter(run_dir, url, "--set", "judge.teacher.fail_fast_after=0") == 0
    rows = _rows(run_dir)
    assert rows["Prove that t"]["reject_reason"] == "judge"
    assert "HTTP 500" in json.loads(rows["Prove that t"]["verdicts"])["judge"]["details"]["error"]
    assert _filter(run_dir, url, "--set", "judge.teacher.fail_fast_after=0", "--set", "judge.on_error=keep") == 0
    rows = _rows(run_dir)
    assert rows["Prove that t"]["kept"] and rows["Explain why "]["kept"]
    assert json.loads(RunDir(run_dir).filter_stats.read_text())["skipped"]["judge"] == 3


def test_the_card_says_what_the_judge_did_and_cost(run_dir, fake_server):
    _, url = fake_server(replies={"": ["VERDICT: yes"]})
    assert _filter(run_dir, url) == 0
    assert main(["card", str(run_dir)]) == 0
    card = (RunDir(run_dir).card / "README.md").read_text()
    assert "The `judge` filter asked `fake-teacher`: 3 traces judged (3 calls, 0 answers from the cache" in card
    assert "| judge | 0 | 0 | 0 |" in card and "teacher=openai:fake-teacher" in card  # its row in the filters
    line = next(line for line in card.splitlines() if line.startswith("The `judge` filter"))
    prompt_tokens = json.loads(RunDir(run_dir).filter_stats.read_text())["judge"]["prompt_tokens"]
    cost = (prompt_tokens * 1.0 + 60 * 2.0) / 1e6  # 3 calls x 20 completion tokens, at $1 / $2 per million
    assert f"{prompt_tokens} prompt and 60 completion tokens, ${cost:.4f}." in line


def test_a_card_without_a_judge_does_not_list_one(run_dir):
    assert main(["filter", str(run_dir), "--no-progress", "--workers", "1"]) == 0
    assert main(["card", str(run_dir)]) == 0
    card = (RunDir(run_dir).card / "README.md").read_text()
    assert "| judge |" not in card and "The `judge` filter" not in card
