"""Correctness: math by math-verify, reasoning-gym tasks by their own `score_answer`, code by running its tests
in the sandbox.

math-verify times out with `signal.alarm`, which works only in a main thread: the filter stage runs row
filters in worker processes, whose main thread this is. A timeout is a rejection with reason `timeout`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..records import Prompt
from ..textutil import last_boxed
from . import Verdict


def final_answer(trace: Mapping[str, Any], lenient: bool = False) -> str | None:
    """The last \\boxed{} of the answer, falling back to the reasoning's; `lenient`: else the last number of the
    answer, else of the reasoning (to measure how much of a difference is the answer's format)."""
    boxed = last_boxed(trace.get("answer") or "") or last_boxed(trace.get("reasoning") or "")
    if boxed is not None or not lenient:
        return boxed
    for text in (trace.get("answer") or "", trace.get("reasoning") or ""):
        numbers = _NUMBER.findall(text.replace(",", ""))
        if numbers:
            return numbers[-1]
    return None


def correctness_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    if prompt.task.startswith("gym:"):
        return gym_correct(trace, prompt, p)
    if prompt.task == "code":
        return code_correct(trace, prompt, p)
    if prompt.task == "choice":
        return choice_correct(trace, prompt, p)
    return math_correct(trace, prompt, p)


# The chosen letter, as simple-evals reads it (`Answer: X`, its GPQA format), then as lighteval also accepts it
# (a boxed letter, "the answer is (X)"); the last such mention in the final answer counts.
_CHOICE_PATTERNS = [re.compile(r"(?i)answer[ \t]*:[ \t]*\**[ \t]*\$?\(?([A-Z])\)?\$?\**(?![A-Za-z])"),
                    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-Z])\)?\s*\}?\s*\}"),
                    re.compile(r"(?i)answer is[ \t]*:?[ \t]*\**\(?([A-Z])\)?(?![A-Za-z])")]


def chosen_letter(text: str, letters: str = "ABCD") -> str | None:
    for pattern in _CHOICE_PATTERNS:
        found = [m for m in pattern.findall(text or "") if m in letters]
        if found:
            return found[-1]
    return None


def choice_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    """Multiple choice (GPQA): the letter the answer chose against the reference letter; math-verify is not
    asked (it would read "Answer: B" as the variable B)."""
    if not prompt.reference_answer:
        return Verdict.skipped("no_reference", reject=p.reject_unverified)
    choices = json.loads(prompt.metadata or "{}").get("choices") or [None] * 4
    letters = "ABCDEFGHIJ"[: len(choices)]
    chosen = chosen_letter(trace.get("answer") or "", letters)
    if chosen is None:
        return Verdict.failed("no_choice", 0.0)
    details = {"predicted": chosen, "reference": prompt.reference_answer}
    if chosen == prompt.reference_answer.strip():
        return Verdict.passed(score=1.0, details=details)
    return Verdict.failed("wrong_answer", 0.0, details)


def math_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    """Rule-based accuracy (R1's), by math-verify. A reference or answer math-verify cannot read (free-form text,
    a proof) is not wrong but unverifiable: a skip, which the judge decides in fallback mode."""
    ref = prompt.reference_answer
    if not ref:
        return Verdict.skipped("no_reference", reject=p.reject_unverified)
    predicted = final_answer(trace, p.lenient)
    fast = None if predicted is None else _plain_numbers_equal(predicted, ref)
    if fast is not None:
        details = {"predicted": predicted[:200], "reference": ref[:200]}
        return Verdict.passed(score=1.0, details=details) if fast else Verdict.failed("wrong_answer", 0.0, details)
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    try:
        gold = None if _prose(ref) else _parse_math(parse, ref if "\\boxed" in ref or "$" in ref else f"${ref}$",
                                                    p.timeout_s)
        if gold is None:
            return _unverifiable("the reference is not a math expression", ref, predicted, p)
        if predicted is None:
            return Verdict.failed("no_boxed_answer", 0.0)
        pred = _parse_math(parse, f"$\\boxed{{{predicted}}}$", p.timeout_s)
        if pred is None:
            return _unverifiable("the answer is not a math expression", ref, predicted, p)
        ok = verify(gold, pred, timeout_seconds=p.timeout_s, raise_on_error=True)
    except TimeoutException:
        return Verdict.failed("timeout", 0.0)
    except Exception as e:  # sympy raises whatever it likes on odd LaTeX: the two could not be compared
        return _unverifiable(f"math-verify could not compare them ({type(e).__name__})", ref, predicted, p)
    details = {"predicted": predicted[:200], "reference": ref[:200]}
    return Verdict.passed(score=1.0, details=details) if ok else Verdict.failed("wrong_answer", 0.0, details)


def _parse_math(parse, text: str, timeout_s: float) -> list | None:
    """math-verify's reading of the text, or None where it finds no expression in it."""
    from math_verify.errors import TimeoutException

    try:
        return parse(text, parsing_timeout=timeout_s, raise_on_error=True) or None
    except TimeoutException:
        raise
    except Exception:
        return None


_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _prose(reference: str) -> bool:
    """A reference in words (a proof, an explanation): math-verify would pick some expression out of it and
    compare against that, which is no check at all. Three words or more, LaTeX commands aside."""
    return len(_WORD.findall(_LATEX_COMMAND.sub(" ", reference))) >= 3


def _unverifiable(why: str, ref: str, predicted: str | None, p) -> Verdict:
    details = {"why": why, "predicted": (predicted or "")[:200], "reference": ref[:200]}
    return Verdict.skipped("unverifiable", reject=p.reject_unverified, details=details)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _plain_numbers_equal(predicted: str, reference: str) -> bool | None:
    """Both plain decimal numbers: compare them directly (math-verify would agree, at 100x the cost); else None.
    Most reasoning-gym and GSM-style answers take this path."""
    a, b = predicted.strip(), reference.strip()
    if not (_NUMBER.fullmatch(a) and _NUMBER.fullmatch(b)):
        return None
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


@lru_cache(maxsize=64)
def _gym_dataset(task: str, size: int, seed: int, args_json: str = "{}"):
    import reasoning_gym

    return reasoning_gym.create_dataset(task, size=size, seed=seed, **json.loads(args_json))


def gym_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    gym = json.loads(prompt.metadata or "{}").get("gym")
    if not gym:
        return Verdict.failed("no_gym_metadata")
    predicted = final_answer(trace, p.lenient)
    if predicted is None:
        return Verdict.failed("no_boxed_answer", 0.0)
    ds = _gym_dataset(gym["task"], gym["size"], gym["seed"], json.dumps(gym.get("args", {}), sort_keys=True))
    score = float(ds.score_answer(answer=predicted, entry=ds[gym["index"]]))
    details = {"predicted": predicted[:200], "reference": (prompt.reference_answer or "")[:200]}
    return Verdict.passed(score, details) if score >= p.min_gym_score else Verdict.failed("wrong_answer", score, details)


_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)


def final_code(text: str) -> str | None:
    blocks = _BLOCK.findall(text or "")
    return blocks[-1] if blocks else None


def _header_imports(meta: dict[str, Any]) -> str:
    """HumanEval prompts import what their signatures use (`from typing import List`); answers often drop it."""
    lines = (meta.get("prompt") or "").splitlines() + (meta.get("imports") or "").splitlines()
    return "\n".join(line for line in lines if line.startswith(("import ", "from ")))


def code_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    from .. import sandbox

    if not prompt.tests:
        return Verdict.skipped("no_reference", reject=p.reject_unverified)
    if not sandbox.available():
        return Verdict.skipped("unverified: no sandbox (install bubblewrap)", reject=p.reject_unverified)
    code = final_code(trace.get("answer") or "")
    if code is None:
        return Verdict.failed("no_code_block", 0.0)
    limits = sandbox.Limits(timeout_s=p.code_timeout_s, cpu_s=max(1, int(p.code_timeout_s)))
    program = f"{_header_imports(json.loads(prompt.metadata or '{}'))}\n{code}"
    io_tests = _io_tests(prompt.tests)
    if io_tests is None:  # assert-style tests (HumanEval's check(), or plain asserts)
        result = sandbox.run_python(f"{program}\n\n{prompt.tests}\n", limits=limits)
        return _verdict(result.ok, result)
    for i, (stdin, expected) in enumerate(io_tests):
        result = sandbox.run_python(program, stdin=stdin, limits=limits)
        if not result.ok or _lines(result.stdout) != _lines(expected):
            return _verdict(False, result, {"failed_case": i})
    return Verdict.passed(score=1.0, details={"cases": len(io_tests)})


def _lines(output: str) -> list[str]:
    """Output as judges compare it: line by line, trailing spaces and blank lines at the ends ignored."""
    return [line.rstrip() for line in output.strip().splitlines()]


def _io_tests(tests: str) -> list[tuple[str, str]] | None:
    """stdin/stdout tests as JSON {"inputs": [...], "outputs": [...]}; None for assert-style tests."""
    try:
        spec = json.loads(tests)
    except ValueError:
        return None
    if isinstance(spec, dict) and isinstance(spec.get("inputs"), list) and isinstance(spec.get("outputs"), list):
        return list(zip(spec["inputs"], spec["outputs"]))
    return None


def _verdict(ok: bool, result, details: dict | None = None) -> Verdict:
    if ok:
        return Verdict.passed(score=1.0, details=details or {})
    reason = "timeout" if result.timed_out else "output_limit" if result.output_limited else "tests_failed"
    return Verdict.failed(reason, 0.0, {**(details or {}), "stderr": result.stderr[-300:]})
