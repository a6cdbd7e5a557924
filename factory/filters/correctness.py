"""Correctness: math by math-verify, reasoning-gym tasks by their own `score_answer`.

math-verify times out with `signal.alarm`, which works only in a main thread: the filter stage runs row
filters in worker processes, whose main thread this is. A timeout is a rejection with reason `timeout`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..records import Prompt
from ..textutil import last_boxed
from . import Verdict, row_filter


def final_answer(trace: Mapping[str, Any]) -> str | None:
    """The last \\boxed{} of the answer, falling back to the reasoning's."""
    return last_boxed(trace.get("answer") or "") or last_boxed(trace.get("reasoning") or "")


@row_filter("correctness")
def correctness_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    if prompt.task.startswith("gym:"):
        return gym_correct(trace, prompt, p)
    if prompt.task == "code":
        return Verdict(not p.reject_unverified, "unverified: the code sandbox is not built yet")
    return math_correct(trace, prompt, p)


def math_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    if not prompt.reference_answer:
        return Verdict(not p.reject_unverified, "no_reference")
    predicted = final_answer(trace)
    if predicted is None:
        return Verdict(False, "no_boxed_answer", 0.0)
    ref = prompt.reference_answer
    try:
        gold = parse(ref if "\\boxed" in ref or "$" in ref else f"${ref}$", parsing_timeout=p.timeout_s,
                     raise_on_error=True)
        pred = parse(f"$\\boxed{{{predicted}}}$", parsing_timeout=p.timeout_s, raise_on_error=True)
        ok = bool(gold) and bool(pred) and verify(gold, pred, timeout_seconds=p.timeout_s, raise_on_error=True)
    except TimeoutException:
        return Verdict(False, "timeout", 0.0)
    except Exception as e:  # sympy raises whatever it likes on odd LaTeX
        return Verdict(False, "parse_error", 0.0, {"error": f"{type(e).__name__}: {e}"[:200]})
    details = {"predicted": predicted[:200], "reference": ref[:200]}
    return Verdict(True, score=1.0, details=details) if ok else Verdict(False, "wrong_answer", 0.0, details)


@lru_cache(maxsize=64)
def _gym_dataset(task: str, size: int, seed: int):
    import reasoning_gym

    return reasoning_gym.create_dataset(task, size=size, seed=seed)


def gym_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    gym = json.loads(prompt.metadata or "{}").get("gym")
    if not gym:
        return Verdict(False, "no_gym_metadata")
    predicted = final_answer(trace)
    if predicted is None:
        return Verdict(False, "no_boxed_answer", 0.0)
    ds = _gym_dataset(gym["task"], gym["size"], gym["seed"])
    score = float(ds.score_answer(answer=predicted, entry=ds[gym["index"]]))
    details = {"predicted": predicted[:200], "reference": (prompt.reference_answer or "")[:200]}
    return Verdict(score >= p.min_gym_score, None if score >= p.min_gym_score else "wrong_answer", score, details)
