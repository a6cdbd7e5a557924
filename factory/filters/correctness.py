"""Correctness: math by math-verify, reasoning-gym tasks by their own `score_answer`, code by running its tests
in the sandbox.

math-verify times out with `signal.alarm`, which works only in a main thread: the filter stage runs row
filters in worker processes, whose main thread this is. A timeout is a rejection with reason `timeout`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from pydantic import Field

from ..config.strict import Strict
from ..core.textutil import all_boxed, last_boxed
from ..storage.records import Prompt
from .base import FilterSpec, Verdict


class CorrectnessParams(Strict):
    enabled: bool = Field(True, description="Reject wrong answers (math-verify; reasoning-gym's score_answer)")
    timeout_s: int = Field(5, ge=1, description="math-verify parse/verify timeout per trace")
    code_timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit per sandboxed test run")
    min_gym_score: float = Field(1.0, ge=0, le=1, description="Lowest reasoning-gym score that counts as correct")
    reject_unverified: bool = Field(True, description="Reject traces that cannot be checked (no reference)")
    lenient: bool = Field(False, description="Without a \\boxed{} answer, take the answer's last number (eval: to "
                          "measure how much of a gain is format; keep it off for filtering, R1 required the box)")


def final_answer(trace: Mapping[str, Any], lenient: bool = False) -> str | None:
    """The last \\boxed{} of the answer, falling back to the reasoning's; `lenient`: else the last number of the
    answer, else of the reasoning (to measure how much of a difference is the answer's format). A number is read
    whole: `.4`, `13/28` and `\\frac{2}{5}` are one number each, never their last digits."""
    boxed = last_boxed(trace.get("answer") or "") or last_boxed(trace.get("reasoning") or "")
    if boxed is not None or not lenient:
        return boxed
    for text in (trace.get("answer") or "", trace.get("reasoning") or ""):
        numbers = _LENIENT_NUMBER.findall(text.replace(",", ""))
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
# (a boxed letter, "the answer is (X)", an answer that is the letter alone, a quoted letter); the last such mention
# counts.
_CHOICE_PATTERNS = [re.compile(r"(?i)answer[ \t]*:[ \t]*\**[ \t]*[\"'“]?\$?\(?([A-Z])\)?\$?[\"'”]?\**(?![A-Za-z])"),
                    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-Z])\)?\s*\}?\s*\}"),
                    re.compile(r"(?i)answer is[ \t]*:?[ \t]*\**\(?([A-Z])\)?(?![A-Za-z])"),
                    re.compile(r"^\s*\**\(?([A-Z])\)?\.?\**\s*$")]


def chosen_letter(text: str, letters: str = "ABCD") -> str | None:
    for pattern in _CHOICE_PATTERNS:
        found = [m for m in pattern.findall(text or "") if m in letters]
        if found:
            return found[-1]
    return None


def choice_letters(prompt: Prompt) -> str:
    choices = json.loads(prompt.metadata or "{}").get("choices") or [None] * 4
    return "ABCDEFGHIJ"[: len(choices)]


def voted_answer(trace: Mapping[str, Any], prompt: Prompt, p) -> str | None:
    """The answer a sample votes for in maj@k: the letter it chose (multiple choice), its final answer (math and
    reasoning-gym); None for code, whose answers are not compared."""
    if prompt.task == "code":
        return None
    if prompt.task == "choice":
        return chosen_letter(trace.get("answer") or "", choice_letters(prompt))
    return final_answer(trace, p.lenient)


def choice_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    """Multiple choice (GPQA): the letter the answer chose against the reference letter; math-verify is not
    asked (it would read "Answer: B" as the variable B)."""
    if not prompt.reference_answer:
        return Verdict.skipped("no_reference", reject=p.reject_unverified)
    chosen = chosen_letter(trace.get("answer") or "", choice_letters(prompt))
    if chosen is None:
        return Verdict.failed("no_choice", 0.0)
    details = {"predicted": chosen, "reference": prompt.reference_answer}
    if chosen == prompt.reference_answer.strip():
        return Verdict.passed(score=1.0, details=details)
    return Verdict.failed("wrong_answer", 0.0, details)


def math_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    """Rule-based accuracy (R1's), by math-verify. A reference or answer math-verify cannot read (free-form text,
    a proof) is not wrong but unverifiable: a skip, which the judge decides in fallback mode."""
    if not prompt.reference_answer:
        return Verdict.skipped("no_reference", reject=p.reject_unverified)
    ref = reference_expression(prompt.reference_answer)
    predicted = final_answer(trace, p.lenient)
    fast = None if predicted is None else plain_numbers_equal(predicted, ref)
    if fast is not None:
        details = {"predicted": predicted[:200], "reference": ref[:200]}
        return Verdict.passed(score=1.0, details=details) if fast else Verdict.failed("wrong_answer", 0.0, details)
    from math_verify import parse
    from math_verify.errors import TimeoutException

    try:
        gold = None if _prose(ref) else _parse_math(parse, ref if "\\boxed" in ref or "$" in ref else f"${ref}$",
                                                    p.timeout_s)
        if gold is None:
            return _unverifiable("the reference is not a math expression", ref, predicted, p)
        if predicted is None:
            return Verdict.failed("no_boxed_answer", 0.0)
        pred = _parse_math(parse, _answer_for(gold, trace.get("answer") or "", predicted), p.timeout_s)
        if pred is None:
            return _unverifiable("the answer is not a math expression", ref, predicted, p)
        ok = _verify(gold, pred, p.timeout_s)
    except TimeoutException:
        return Verdict.failed("timeout", 0.0)
    except Exception as e:  # sympy raises whatever it likes on odd LaTeX: the two could not be compared
        return _unverifiable(f"math-verify could not compare them ({type(e).__name__})", ref, predicted, p)
    details = {"predicted": predicted[:200], "reference": ref[:200]}
    return Verdict.passed(score=1.0, details=details) if ok else Verdict.failed("wrong_answer", 0.0, details)


def _verify(gold: list, pred: list, timeout_s: float) -> bool:
    """math-verify's verdict. It compares every reading of each side (a sympy expression, then the string);
    with raise_on_error an error in the first (`12:00` reads as 12/0) hides the second. So an error is asked
    again without raising: equal there is equal; unequal after an error is no verdict (the error is raised)."""
    from math_verify import verify
    from math_verify.errors import TimeoutException

    try:
        return verify(gold, pred, timeout_seconds=timeout_s, raise_on_error=True)
    except TimeoutException:
        raise
    except Exception:
        if verify(gold, pred, timeout_seconds=timeout_s, raise_on_error=False):
            return True
        raise


def reference_expression(reference: str) -> str:
    """The reference as math-verify should read it. A sentence with its answer boxed (a MATH or Numina
    `solution`) is its last box; boxes standing alone (`\\boxed{1}, \\boxed{2}`) stay, read as one set.
    Newlines become spaces: inline `$...$` does not cross lines in math-verify, and LaTeX reads them as spaces."""
    ref = " ".join(reference.split("\n")).strip()
    boxes = all_boxed(ref)
    if len(boxes) == 1 or (boxes and _prose(_outside(ref, boxes))):
        return boxes[-1][0].strip()
    return ref


def _outside(text: str, boxes: list[tuple[str, int, int]]) -> str:
    """The text with its boxes cut out."""
    out, at = [], 0
    for _, start, end in boxes:
        out.append(text[at:start])
        at = end
    return " ".join([*out, text[at:]])


def _answer_for(gold: list, answer: str, predicted: str) -> str:
    """What math-verify reads of the answer: its last box (R1's final answer), or, where the reference is a set
    or tuple and the answer boxes its elements one by one (`\\boxed{(1,2)}, \\boxed{(2,1)}`), every box of
    the answer, which math-verify reads as one set."""
    boxes = all_boxed(answer)
    if len(boxes) > 1 and _is_collection(gold[0]):
        return "$" + ", ".join(f"\\boxed{{{b}}}" for b, _, _ in boxes) + "$"
    return f"$\\boxed{{{predicted}}}$"


def _is_collection(expr: Any) -> bool:
    from sympy import FiniteSet, Tuple

    return isinstance(expr, (FiniteSet, Tuple)) and len(expr) > 1


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
_ENVIRONMENT = re.compile(r"\\begin\{[^}]*\}(?:\{[lcr|\s]*\})?|\\end\{[^}]*\}")  # with an array's column spec
_SHORT_TEXT = re.compile(r"\\(?:text|textnormal|textrm|textbf|textit|mathrm|mbox)\s*\{\s*(?:[A-Za-z.]+\s*){1,3}\}")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _prose(reference: str) -> bool:
    """A reference in words (a proof, an explanation): math-verify would pick some expression out of it and
    compare against that, which is no check at all. Three words or more, not counting LaTeX commands,
    environment names (`\\begin{array}{cc}`) and a unit of up to three words in `\\text{}`."""
    bare = _SHORT_TEXT.sub(" ", _ENVIRONMENT.sub(" ", reference))
    return len(_WORD.findall(_LATEX_COMMAND.sub(" ", bare))) >= 3


def _unverifiable(why: str, ref: str, predicted: str | None, p) -> Verdict:
    details = {"why": why, "predicted": (predicted or "")[:200], "reference": ref[:200]}
    return Verdict.skipped("unverifiable", reject=p.reject_unverified, details=details)


_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_LENIENT_NUMBER = re.compile(r"(?:-\s*)?\\[dt]?frac\{\s*-?\d+\s*\}\{\s*-?\d+\s*\}"
                             r"|-?\d+(?:\.\d+)?\s*/\s*\d+(?:\.\d+)?|-?(?:\d+(?:\.\d+)?|\.\d+)")
_FLOAT_PLACES = Decimal("1e-6")  # math-verify's default float_rounding: 6 places
_FLOAT_DIGITS = 15  # sympy reads a decimal into a Float of 15 significant digits


def plain_numbers_equal(predicted: str, reference: str) -> bool | None:
    """Both plain decimal numbers: math-verify's verdict, computed directly (at 1/100 of its cost); else None.
    Integers compare exactly; where either has a decimal point both are rounded to 6 places, as math-verify
    rounds floats. Where its Float could round otherwise (more than 15 significant digits, or a tie at the 7th
    place), None: math-verify decides. Most reasoning-gym and GSM-style answers take this path."""
    a, b = predicted.strip(), reference.strip()
    if not (_PLAIN_NUMBER.fullmatch(a) and _PLAIN_NUMBER.fullmatch(b)):
        return None
    if "." not in a and "." not in b:
        return int(a) == int(b)
    x, y = Decimal(a), Decimal(b)
    if any(len(v.as_tuple().digits) > _FLOAT_DIGITS or _tie(v) for v in (x, y)):
        return None
    return x.quantize(_FLOAT_PLACES, ROUND_HALF_EVEN) == y.quantize(_FLOAT_PLACES, ROUND_HALF_EVEN)


def _tie(value: Decimal) -> bool:
    """Exactly half way between two 6-place values: binary floating point decides which way it rounds."""
    return (value.scaleb(6) % 1).copy_abs() == Decimal("0.5")


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
    """HumanEval prompts import what their signatures use (`from typing import List`); answers often drop it.
    A source's own preamble (`imports`: LiveCodeBench's, its recursion limit included) comes whole."""
    lines = [line for line in (meta.get("prompt") or "").splitlines() if line.startswith(("import ", "from "))]
    return "\n".join([*lines, *(meta.get("imports") or "").splitlines()])


def code_correct(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    from . import sandbox

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
        if not result.ok or not outputs_match(result.stdout, expected):
            return _verdict(False, result, {"failed_case": i})
    return Verdict.passed(score=1.0, details={"cases": len(io_tests)})


def outputs_match(output: str, expected: str) -> bool:
    """A program's stdout against the expected output, as LiveCodeBench's `grade_stdio` compares them: the same
    number of lines once both are stripped; each line stripped and equal, or else every whitespace-separated
    token of both lines a decimal number and the two lists of numbers equal (`3.0` is `3`, `1  2` is `1 2`)."""
    got, want = _stripped_lines(output), _stripped_lines(expected)
    return len(got) == len(want) and all(map(_line_matches, got, want))


def _line_matches(got: str, want: str) -> bool:
    if got == want:
        return True
    a, b = _decimals(got), _decimals(want)
    try:
        return a is not None and b is not None and a == b
    except InvalidOperation:  # a signalling NaN refuses to compare
        return False


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except InvalidOperation:
        return None


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


# ~2k rows/s on one core (math-verify; bench/results/filters.json). Needed on every row: a prompt's pass rate
# counts all its samples.
SPEC = FilterSpec("correctness", CorrectnessParams, "row", correctness_filter, "expensive", needed=True)
