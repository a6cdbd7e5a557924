"""The `judge` filter: a generative reward model where rules cannot verify (R1 used DeepSeek-V3 so for
free-form answers and non-reasoning data). Any teacher engine is the judge; its answers are cached in the run's
sample cache keyed by (trace, judge model, template), so a rerun calls nothing, and changing only the
threshold re-reads the cached answers.

The verdict is the judge's last `VERDICT: yes|no` or `SCORE: N` line; its answer is kept as the rationale.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable
from typing import Any

from ..cache import SampleCache, sample_key
from ..model_content import model_content
from ..records import prompt_from_row
from ..teacher_config import SamplingConfig
from . import Verdict
from .params import JudgeParams

TEMPLATES = {
    "equivalence": (
        "You are checking a student's final answer against the reference answer.\n\n"
        "Problem:\n{problem}\n\nReference answer:\n{reference}\n\nStudent's final answer:\n{answer}\n\n"
        "Are the two answers mathematically or semantically equivalent (the same value, set, expression or "
        "choice, whatever the notation)? Explain in a sentence or two, then end with exactly one line: "
        "VERDICT: yes or VERDICT: no"),
    "rubric": (
        "You are grading a worked solution for correctness and quality.\n\n"
        "Problem:\n{problem}\n\nReference answer (may be empty):\n{reference}\n\nReasoning:\n{reasoning}\n\n"
        "Final answer:\n{answer}\n\nIs the reasoning sound, free of errors and language mixing, and does it reach "
        "the right answer? Give a short rationale, then end with exactly one line: SCORE: N, where N is an "
        "integer from 0 (wrong or useless) to 10 (correct and clear)"),
}
REASONING_CHARS = 24_000  # of a long trace, the rubric shows the start and the end
_FIELD = re.compile(r"\{(problem|reference|reasoning|answer)\}")
_VERDICT = re.compile(r"VERDICT:\s*\**\s*(yes|no)\b", re.IGNORECASE)
_SCORE = re.compile(r"SCORE:\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def verdict_kind(p: JudgeParams) -> str:
    return p.verdict or ("yes_no" if p.template == "equivalence" and not p.prompt else "score")


def judge_prompt(row: dict[str, Any], p: JudgeParams) -> str:
    """The template with the trace filled in, in one pass: text in a trace that looks like a placeholder stays
    text."""
    reasoning = row.get("reasoning") or ""
    if len(reasoning) > REASONING_CHARS:
        half = REASONING_CHARS // 2
        reasoning = f"{reasoning[:half]}\n[... {len(reasoning) - REASONING_CHARS} characters ...]\n{reasoning[-half:]}"
    values = {"problem": row.get("problem") or "", "reference": row.get("reference_answer") or "",
              "reasoning": reasoning, "answer": row.get("answer") or ""}
    return _FIELD.sub(lambda m: values[m.group(1)], p.prompt or TEMPLATES[p.template])


def judge_key(row: dict[str, Any], p: JudgeParams) -> str:
    t = p.teacher
    content = _judge_content(t.model)  # a local judge retrained in place must judge afresh
    return sample_key({"judge": t.model, "engine": t.engine, "prompt": judge_prompt(row, p),
                       "max_tokens": p.max_tokens, "temperature": p.temperature,
                       **({"judge_content": content} if content else {})})


@functools.lru_cache(maxsize=8)
def _judge_content(model: str) -> str | None:
    return model_content(model)  # once per process: the judge's files do not change during a filter run


def parse_verdict(text: str, p: JudgeParams) -> Verdict:
    body = text.rsplit("</think>", 1)[-1].strip()
    details = {"rationale": body[-2000:], "judge": p.teacher.model}
    if verdict_kind(p) == "yes_no":
        found = _VERDICT.findall(body)
        if found:
            ok = found[-1].lower() == "yes"
            return Verdict.passed(details=details) if ok else Verdict.failed("judge_rejected", details=details)
    else:
        found = _SCORE.findall(body)
        if found:
            score = float(found[-1])
            if score >= p.threshold:
                return Verdict.passed(score=score, details=details)
            return Verdict.failed("judge_low_score", score=score, details=details)
    return error_verdict("no verdict in the judge's answer", p, details)


def error_verdict(error: str, p: JudgeParams, details: dict[str, Any] | None = None) -> Verdict:
    details = {**(details or {}), "error": error[:500]}
    if p.on_error == "keep":
        return Verdict("skip", "unverified: judge_error", None, details)
    return Verdict.failed("judge_error", details=details)


def run_judge(p: JudgeParams, rows: Iterable[tuple[int, dict[str, Any]]], cache: SampleCache,
              progress: bool = True) -> tuple[dict[int, Verdict], dict[str, Any]]:
    """Verdicts for (index, row) pairs: from the cache where the judge answered before, else from the judge.
    Returns them by index, with what it cost."""
    from ..generation import cache_record, sampling_column
    from ..progress import GenerationProgress
    from ..teachers import Completion, Request, make_teacher

    verdicts: dict[int, Verdict] = {}
    pending: dict[str, list[int]] = {}
    requests = []
    for index, row in rows:
        key = judge_key(row, p)
        cached = cache.get(key)
        if cached is not None:
            verdicts[index] = parse_verdict(cached["text"], p)
        elif key in pending:  # the same trace twice (exact duplicates): one call
            pending[key].append(index)
        else:
            pending[key] = [index]
            requests.append(Request(prompt=prompt_from_row(row), sample_indices=[0], keys=[key],
                                    messages=[{"role": "user", "content": judge_prompt(row, p)}]))
    report: dict[str, Any] = {"judged": len(verdicts) + sum(map(len, pending.values())), "from_cache": len(verdicts),
                              "requested": len(requests), "errors": 0}
    if not requests:
        return verdicts, report
    sampling = SamplingConfig(n=1, temperature=p.temperature, top_p=1.0, max_tokens=p.max_tokens)
    teacher = make_teacher(p.teacher, sampling)
    same = {"teacher_model": teacher.model, "engine": teacher.engine,
            "sampling": json.loads(sampling_column({"temperature": p.temperature, "top_p": 1.0,
                                                    "max_tokens": p.max_tokens, "judge": True}))}
    started = time.perf_counter()
    try:
        with GenerationProgress(len(requests), teacher.usage, enabled=progress) as advance:
            def sink(req: Request, c: Completion) -> None:
                key = req.keys[0]
                if c.error:
                    verdict = error_verdict(c.error, p)
                    report["errors"] += 1
                else:
                    cache.put(key, cache_record(same, c))  # not failures: a rerun asks again
                    verdict = parse_verdict(c.text, p)
                for index in pending[key]:
                    verdicts[index] = verdict
                advance()
            teacher.generate(iter(requests), sink)
    finally:
        teacher.close()
    u = teacher.usage
    report.update(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, http_requests=u.requests,
                  retries=u.retries, seconds=round(time.perf_counter() - started, 2))
    if p.teacher.prices:
        report["cost_usd"] = round((u.prompt_tokens * p.teacher.prices.input_per_mtok
                                    + u.completion_tokens * p.teacher.prices.output_per_mtok) / 1e6, 6)
    return verdicts, report
