import json

import pytest

from factory.config.stages import PromptsConfig
from factory.filters import sandbox
from factory.sources.gym import load_gym
from tests.filters.helpers import judge, trace


@pytest.mark.parametrize("row,ok,reason", [
    (trace(), True, None),
    (trace(error="server_error: HTTP 500"), False, "generation_error"),
    (trace(reasoning="  "), False, "no_reasoning"),
    (trace(reasoning_source="unclosed_think", answer=""), False, "unclosed_think"),
    (trace(answer=""), False, "no_answer"),
])
def test_format(row, ok, reason):
    v = judge("format", row)
    assert (v.ok, v.reason) == (ok, reason)


@pytest.mark.parametrize("row,params,ok,reason", [
    (trace(completion_tokens=50), {}, True, None),
    (trace(completion_tokens=50, truncated=True, finish_reason="length"), {}, False, "truncated"),
    (trace(completion_tokens=50, truncated=True), {"reject_truncated": False}, True, None),
    (trace(completion_tokens=5), {"min_tokens": 10}, False, "too_short"),
    (trace(completion_tokens=5000), {"max_tokens": 4096}, False, "too_long"),
])
def test_length(row, params, ok, reason):
    v = judge("length", row, **params)
    assert (v.ok, v.reason) == (ok, reason)


def test_length_counts_when_the_teacher_did_not():
    v = judge("length", trace(completion_tokens=None, raw_completion="one two three, four."))
    assert v.ok and v.score == 6 and v.details["counted_by"] == "estimated"


@pytest.mark.parametrize("answer,ref,ok,reason", [
    ("\\boxed{4}", "4", True, None),
    ("so \\boxed{4.0}", "4", True, None),
    ("\\boxed{\\frac{1}{2}}", "0.5", True, None),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True, None),
    ("\\boxed{1/2}", "\\frac12", True, None),
    ("\\boxed{x = 3}", "3", True, None),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}", True, None),
    ("\\boxed{\\{1, 2\\}}", "\\{2, 1\\}", True, None),
    ("\\boxed{50\\%}", "50", True, None),
    ("first \\boxed{3} then \\boxed{5}", "5", True, None),
    ("\\boxed{5}", "4", False, "wrong_answer"),
    ("\\boxed{\\frac{1}{3}}", "0.5", False, "wrong_answer"),
    ("The answer is 4.", "4", False, "no_boxed_answer"),
])
def test_math_correctness(answer, ref, ok, reason):
    v = judge("correctness", trace(reasoning="Thinking.", answer=answer, ref=ref))
    assert (v.ok, v.reason) == (ok, reason), v.details


def test_math_falls_back_to_the_reasonings_boxed_answer():
    assert judge("correctness", trace(reasoning="so \\boxed{4}", answer="Four.")).ok


def test_math_without_reference_is_unverified():
    v = judge("correctness", trace(ref=None))
    assert (v.ok, v.reason) == (False, "no_reference")
    assert judge("correctness", trace(ref=None), reject_unverified=False).ok


def test_gym_uses_reasoning_gyms_own_scorer():
    (prompt,) = load_gym("chain_sum", PromptsConfig(size=1, seed=3))
    row = trace(task=prompt.task, ref=prompt.reference_answer, metadata=prompt.metadata)
    right = judge("correctness", {**row, "answer": f"\\boxed{{{prompt.reference_answer}}}"})
    wrong = judge("correctness", {**row, "answer": f"\\boxed{{{int(prompt.reference_answer) + 1}}}"})
    assert (right.ok, right.score) == (True, 1.0)
    assert (wrong.ok, wrong.reason) == (False, "wrong_answer")


EN = "First we add the two numbers together carefully. Then we check the result against the question."
ZH = "我们先把这两个数加起来，然后检查结果是否正确。这一步很重要，需要仔细计算每一个数字。"


@pytest.mark.parametrize("reasoning,params,ok", [
    (EN, {}, True),
    (EN + "\n" + ZH, {}, False),
    (EN + " 所以答案是四。", {"max_mixed_share": 0.02}, False),
    (ZH, {"target": "zh"}, True),
    (ZH + "\n" + EN, {"target": "zh"}, False),
    (EN + " $\\frac{a}{b} + \\sqrt{c} = \\alpha \\beta$ " + EN, {}, True),
    ("Nous additionnons les deux nombres puis nous vérifions le résultat obtenu.\n" + EN, {"max_mixed_share": 0.2},
     False),
])
def test_language(reasoning, params, ok):
    v = judge("language", trace(reasoning=reasoning), **params)
    assert v.ok == ok, v.details
    if not ok:
        assert v.reason == "language_mixing" and v.score > params.get("max_mixed_share", 0.1)


@pytest.mark.parametrize("reasoning,task,ok,reason", [
    ("Let me compute 2 + 2 = 4 in my head.", "math", True, None),
    ("Let me check:\n```python\nprint(2 + 2)\n```\nIt prints 4.", "math", False, "fenced_code"),
    ("Check:\n    x = 2\n    y = x + 2\n    print(y)\nSo 4.", "math", False, "indented_code"),
    ("Plan:\n```python\ndef f(): pass\n```", "code", True, "skipped: code task"),
])
def test_code_block(reasoning, task, ok, reason):
    v = judge("code_block", trace(reasoning=reasoning, task=task))
    assert (v.ok, v.reason) == (ok, reason)


def test_repetition_catches_loops_only():
    loop = "Wait, let me recompute the sum of the numbers again. " * 12
    assert not judge("repetition", trace(reasoning=EN + loop)).ok
    assert judge("repetition", trace(reasoning=EN * 2)).ok


def test_identity_phrases_are_configurable():
    row = trace(reasoning="As an AI language model, I think 2 + 2 = 4.")
    v = judge("identity", row)
    assert (v.ok, v.reason, v.details) == (False, "identity", {"phrases": ["As an AI"]})
    assert judge("identity", row, phrases=["I am DeepSeek"]).ok


def test_verdicts_serialise_compactly():
    v = judge("length", trace())
    assert json.loads(json.dumps(v.to_json())) == {"ok": True, "score": 50.0, "details": {"tokens": 50,
                                                                                         "counted_by": "teacher"}}


def _humaneval(answer: str) -> dict:
    from factory.sources.humaneval import load_humaneval

    p = load_humaneval()[0]
    return trace(task="code", ref=None, reasoning="Plan.", answer=answer, tests=p.tests, metadata=p.metadata)


@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap is not installed")
def test_code_correctness_runs_the_tests_in_the_sandbox():
    from factory.sources.humaneval import load_humaneval

    meta = json.loads(load_humaneval()[0].metadata)
    right = f"Here it is:\n```python\n{meta['prompt']}{meta['canonical_solution']}```"
    body_only = "```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n" \
                "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```"
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    hang = "```python\ndef has_close_elements(numbers, threshold):\n    while True:\n        pass\n```"
    assert judge("correctness", _humaneval(right)).ok
    assert judge("correctness", _humaneval(body_only)).ok, "the prompt's typing import is added"
    v = judge("correctness", _humaneval(wrong))
    assert (v.ok, v.reason) == (False, "tests_failed") and "AssertionError" in v.details["stderr"]
    assert judge("correctness", _humaneval(hang), code_timeout_s=2).reason == "timeout"
    assert judge("correctness", _humaneval("No code, sorry.")).reason == "no_code_block"


@pytest.mark.skipif(not sandbox.available(), reason="bubblewrap is not installed")
def test_code_correctness_with_stdin_stdout_cases():
    tests = json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]})
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    bad = "```python\na, b = map(int, input().split())\nprint(a * b)\n```"
    row = trace(task="code", ref=None, tests=tests)
    assert judge("correctness", {**row, "answer": good}).details == {"cases": 2}
    v = judge("correctness", {**row, "answer": bad})
    assert (v.ok, v.details["failed_case"]) == (False, 0)


def test_math_verify_timeout_is_a_rejection_with_its_reason():
    import time

    started = time.monotonic()
    v = judge("correctness", trace(answer="\\boxed{9^{9^{9^{9}}}}", ref="9^{9^{9^{8}}}"), timeout_s=1)
    assert (v.ok, v.reason) == (False, "timeout") and time.monotonic() - started < 10


def test_lenient_answers_take_the_last_number_when_there_is_no_box():
    from factory.filters.correctness import CorrectnessParams, correctness_filter, final_answer
    from factory.storage.records import Prompt

    prompt = Prompt(source="t", task="math", problem="2 + 40?", reference_answer="42")
    trace = {"reasoning": "2 plus 40 is 42", "answer": "So the total is 1,042 - 1000 = 42."}
    assert final_answer(trace) is None and final_answer(trace, lenient=True) == "42"
    assert correctness_filter(trace, prompt, CorrectnessParams()).reason == "no_boxed_answer"
    assert correctness_filter(trace, prompt, CorrectnessParams(lenient=True)).ok
    boxed = {"reasoning": "", "answer": "\\boxed{41}, not 42"}
    assert final_answer(boxed, lenient=True) == "41", "a box always wins"
