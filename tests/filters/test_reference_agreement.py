"""Issue 35: the eleven places where our verdicts disagreed with the field's reference graders (math-verify,
lighteval, open-r1's rewards, LiveCodeBench's grader). Each test failed on the code before the fix."""

import json
import random

import pytest

from factory.filters import sandbox
from factory.filters.correctness import (
    CorrectnessParams,
    correctness_filter,
    final_answer,
    plain_numbers_equal,
)
from factory.storage.records import Prompt
from tests.filters.helpers import judge, trace

SANDBOX = pytest.mark.skipif(not sandbox.available(),
                             reason="bubblewrap is not installed")


def verdict(ref: str, answer: str, **params):
    v = judge("correctness", trace(reasoning="Thinking.", answer=answer, ref=ref), **params)
    return v.status, v.reason


@pytest.mark.parametrize("ref,answer,status", [
    ("10000000000", "\\boxed{10000000005}", "fail"),  # was a pass: floats compared with a relative tolerance
    ("1000000000", "\\boxed{1000000001}", "fail"),
    (str(2**53 + 1), f"\\boxed{{{2**53}}}", "fail"),  # equal as floats
    ("0.333333", "\\boxed{0.3333333}", "pass"),  # math-verify rounds floats to 6 places
    ("1000", "\\boxed{1000.0}", "pass"),
    ("2.5", "\\boxed{2.50000049}", "pass"),
    ("1.0000005", "\\boxed{1.0000015}", "fail"),
])
def test_numbers_compare_as_math_verify_compares_them(ref, answer, status):
    assert verdict(ref, answer)[0] == status


def test_the_number_fast_path_agrees_with_math_verify_on_random_pairs():
    """A property test: the fast path's verdict, wherever it gives one, is math-verify's own."""
    from math_verify import parse, verify

    rng = random.Random(35)

    def number() -> str:
        kind = rng.random()
        if kind < 0.3:
            return str(rng.randint(-10**rng.randint(1, 18), 10**rng.randint(1, 18)))
        digits = rng.randint(1, 9)
        whole = rng.choice(["0", "", str(rng.randint(0, 10**rng.randint(0, 8)))])
        return f"{rng.choice(['', '-'])}{whole}.{rng.randint(0, 10**digits - 1):0{digits}d}"

    decided = 0
    for _ in range(300):
        a = number()
        b = rng.choice([a, number(), a + rng.choice(["0", "1", "5", "49"]), a.rstrip("0") or "0"])
        fast = plain_numbers_equal(a, b)
        if fast is None:
            continue
        decided += 1
        assert fast == verify(parse(f"${b}$"), parse(f"$\\boxed{{{a}}}$")), (a, b)
    assert decided > 250


def test_a_string_math_verify_calls_equal_is_equal_even_where_sympy_raises():
    assert verdict("12:00", "\\boxed{12:00}") == ("pass", None)  # 12/0 raised before the string comparison
    assert verdict("12:00", "\\boxed{11:00}")[0] != "pass"


@pytest.mark.parametrize("ref,answer", [
    ("\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}", "\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}"),
    ("4 \\text{ miles per hour}", "\\boxed{4}"),
])
def test_environment_names_and_units_are_not_prose(ref, answer):
    assert verdict(ref, answer) == ("pass", None)


def test_a_reference_sentence_with_a_box_is_read_by_its_last_box():
    assert verdict("The answer is \\boxed{5}.", "\\boxed{5}") == ("pass", None)
    assert verdict("The answer is \\boxed{5}.", "\\boxed{6}") == ("fail", "wrong_answer")
    solution = "First $x = \\boxed{2}$ is tried and fails, so the smallest is \\boxed{7}."
    assert verdict(solution, "\\boxed{7}") == ("pass", None)
    assert verdict("The proof follows from the lemma by induction on n.", "\\boxed{5}")[1] == "unverifiable"


@pytest.mark.parametrize("ref,answer", [
    ("\n(1, 2)", "\\boxed{(1, 2)}"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}\n", "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}"),
])
def test_a_reference_with_a_newline_is_read_whole(ref, answer):
    assert verdict(ref, answer) == ("pass", None)


def test_several_boxes_answer_a_set_as_math_verify_reads_them():
    assert verdict("(1,2),(2,1)", "\\boxed{(1,2)}, \\boxed{(2,1)}") == ("pass", None)
    assert verdict("k=45, n=2", "so \\boxed{k=45} and \\boxed{n=2}") == ("pass", None)
    assert verdict("(1,2),(2,1)", "\\boxed{(2,1)}") == ("fail", "wrong_answer"), "half the set is wrong"
    assert verdict("45", "first \\boxed{3}, then \\boxed{45}") == ("pass", None), "not a set: the last box"


@pytest.mark.parametrize("text,ref,number", [
    ("so it is .4", "4", ".4"), ("the share is 13/28", "28", "13/28"), ("2/5 of them", "5", "2/5"),
    ("that is \\frac{2}{5}", "5", "\\frac{2}{5}"),
])
def test_lenient_scoring_reads_decimals_and_fractions_whole(text, ref, number):
    """These were false passes: `.4` read as 4, `13/28` as 28."""
    assert final_answer({"answer": text}, lenient=True) == number
    assert verdict(ref, text, lenient=True)[0] == "fail"
    prompt = Prompt(source="t", task="math", problem="q", reference_answer="0.4")
    assert correctness_filter({"answer": "so .4"}, prompt, CorrectnessParams(lenient=True)).ok


def test_repetition_in_a_script_without_spaces_is_caught():
    loop = "我们再检查一次这个计算。" * 200
    v = judge("repetition", trace(reasoning=loop))
    assert (v.ok, v.reason) == (False, "repetition")
    varied = "".join(f"第{i}步：把{i}加到总和里，得到{i * (i + 1) // 2}。" for i in range(1, 60))
    assert judge("repetition", trace(reasoning=varied)).ok


def test_the_format_reward_and_the_accuracy_reward_want_the_reasoning_first():
    from factory.filters.rewards import RewardsConfig, completion_row, score
    from factory.storage.records import PROMPT_FIELDS

    prompt = Prompt(source="t", task="math", problem="q", reference_answer="5")
    columns = {k: getattr(prompt, k) for k in PROMPT_FIELDS}
    rewards = lambda text: score(completion_row(columns, text, 20, 100), 100, RewardsConfig())  # noqa: E731
    assert rewards("<answer>\\boxed{5}</answer><think>so it is five</think>") == {"accuracy": 0.0, "format": 0.0}
    assert rewards("<think>so it is five</think><answer>\\boxed{5}</answer>") == {"accuracy": 1.0, "format": 1.0}
    v = judge("format", trace(raw_completion="\\boxed{5}<think>r</think>", answer="\\boxed{5}"),
              require_think_tags=True)
    assert (v.ok, v.reason) == (False, "answer_before_reasoning")


def test_maj_at_k_on_multiple_choice_votes_with_the_chosen_letter():
    from factory.core.eval_metrics import problem_metrics
    from factory.stages.eval import score_problem

    prompt = Prompt(source="gpqa", task="choice", problem="q", reference_answer="B",
                    metadata=json.dumps({"choices": ["w", "x", "y", "z"]}))
    answers = ["Answer: B", "So the answer is B.", "Answer: C", "\\boxed{B}"]
    rows = [{"sample_index": i, "answer": a, "reasoning": "", "error": None} for i, a in enumerate(answers)]
    samples = score_problem(prompt, rows, CorrectnessParams())
    assert [s["answer"] for s in samples] == ["B", "B", "C", "B"]
    m = problem_metrics([s["correct"] for s in samples], [s["answer"] for s in samples], [4])
    assert m["maj@4"] == 1.0


def _stdin_row(expected: str, program: str, task_meta: dict | None = None) -> dict:
    tests = json.dumps({"inputs": ["\n"], "outputs": [expected]})
    row = trace(task="code", ref=None, tests=tests, metadata=json.dumps(task_meta or {}))
    return {**row, "answer": f"```python\n{program}\n```"}


@SANDBOX
@pytest.mark.parametrize("printed,expected,ok", [
    ("print('3.0')", "3\n", True),  # compared as decimals
    ("print('1  2')", "1 2\n", True),
    ("print('  x  ')", "x\n", True),  # each line stripped
    ("print('a  b')", "a b\n", False),  # words are not numbers: the line must be equal
    ("print('1'); print(); print('2')", "1\n2\n", False),  # a blank line inside is a line
    ("print('3.01')", "3\n", False),
])
def test_stdin_outputs_compare_as_livecodebench_compares_them(printed, expected, ok):
    assert judge("correctness", _stdin_row(expected, printed)).ok is ok


@SANDBOX
def test_livecodebench_preamble_and_tuples_as_its_grader_has_them():
    from factory.sources.livecodebench import IMPORTS, _harness

    meta = {"imports": IMPORTS}
    program = "print(gcd(12, 18), comb(5, 2), inf > 10**9, deepcopy([1])[0], sys.getrecursionlimit())"
    assert judge("correctness", _stdin_row("6 10 True 1 50000\n", program, meta)).ok
    tests = _harness("pair", [{"input": "1\n2", "output": "[1, 2]"}])
    solution = "class Solution:\n    def pair(self, a, b):\n        return (a, b)"
    row = {**trace(task="code", ref=None, tests=tests, metadata=json.dumps(meta)),
           "answer": f"```python\n{solution}\n```"}
    assert judge("correctness", row).ok, "a tuple result equals the expected list"
