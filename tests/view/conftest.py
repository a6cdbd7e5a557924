"""A filtered run with hostile traces for the viewer's tests: model output that tries to run script."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from factory.cli import main
from factory.storage.records import TRACE_SCHEMA, Prompt, Trace
from factory.storage.rundir import RunDir
from factory.storage.shards import write_shards

REPO = Path(__file__).resolve().parents[2]
HOSTILE = ('<script>window.pwned = 1; alert("pwned")</script> <img src=x onerror="window.pwned = 2"> '
           '<a href="javascript:window.pwned = 3">click me</a>')


def trace_rows(prompts: int = 12) -> list[dict]:
    rows = []
    for i in range(prompts):
        p = Prompt(source="synthetic", task="math" if i % 3 else "logic", problem=f"What is {i} + {i}? {HOSTILE if i == 1 else ''}",
                   reference_answer=str(2 * i))
        for s in range(3):
            text = " ".join(f"step {k}: {k * (i + 1) + s} plus {k} is {k * (i + 2) + s}." for k in range(40))
            if i == 1:
                text = f"{HOSTILE}\n{text}"
            if s == 2 and i % 2 == 0:
                text += " 然后我们把这些数字加在一起得到最终的答案是正确的" * 30  # rejected by language
            answer = f"\\boxed{{{2 * i if s != 1 else 2 * i + 1}}}"  # sample 1 is always wrong
            rows.append(Trace(prompt=p, sample_index=s, teacher_model="t", engine="openai", sampling="{}",
                              messages="[]", reasoning=text, answer=answer,
                              raw_completion=f"<think>{text}</think>{answer}", reasoning_source="think_tags",
                              finish_reason="stop", completion_tokens=300 + 10 * i + s).to_row())
    return rows


@pytest.fixture(scope="session")
def view_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("view") / "run"
    write_shards(RunDir(run).traces, trace_rows(), TRACE_SCHEMA, rows_per_shard=10)
    assert main(["filter", str(run), "--no-progress", "--workers", "1"]) == 0
    assert main(["pairs", str(run)]) == 0
    evals = RunDir(run).eval
    evals.mkdir()
    for name in ("before-gym-chain_sum.json", "after-gym-chain_sum.json", "compare.png"):  # a real run's evals
        shutil.copy(REPO / "docs" / "grpo-cpu" / name, evals / name)
    return run
