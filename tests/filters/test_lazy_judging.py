"""Typed verdicts and cheap-first judging: skipping the expensive filters on rejected rows never changes what is
kept or why; `filter.all_verdicts` judges everything; a hung worker's rows are charged to the filter it was in."""

import json
import time

import pytest

from factory.cli import main
from factory.filters import (
    DEFAULT_ORDER,
    FILTERS,
    MODEL_FILTERS,
    ROW_FILTERS,
    SET_FILTERS,
    Verdict,
    run_row_filters,
)
from factory.filters.config import FilterConfig
from factory.storage.records import TRACE_SCHEMA, Prompt, Trace
from factory.storage.shards import ShardWriter, read_table
from tests.filters.helpers import trace

ZH = "我们先把这两个数加起来，然后检查结果。" * 10
LOOP = " ".join(["we check the sum again"] * 40)


def _params(cfg: FilterConfig) -> dict:
    return {n: getattr(cfg, n) for n in ROW_FILTERS if n != "decontam"}


def test_the_table_derives_the_lists_and_the_order():
    assert DEFAULT_ORDER == ["format", "length", "correctness", "language", "code_block", "repetition", "identity",
                             "decontam", "judge", "dedup", "selection"]
    assert SET_FILTERS == ("dedup", "selection") and MODEL_FILTERS == ("judge",)
    assert set(ROW_FILTERS) | set(MODEL_FILTERS) | set(SET_FILTERS) == set(DEFAULT_ORDER)
    assert [n for n in FILTERS if FILTERS[n].skippable] == ["language", "repetition"]
    assert FILTERS["length"].function()(trace(), None, FilterConfig().length).status == "pass"
    with pytest.raises(TypeError, match="set filter, run by the filter stage"):
        FILTERS["dedup"].function()


@pytest.mark.parametrize("verdict,status,ok", [
    (Verdict.passed(1.0), "pass", True), (Verdict.failed("wrong_answer", 0.0), "fail", False),
    (Verdict.skipped("skipped: code task"), "skip", True),
    (Verdict.skipped("no_reference", reject=True), "skip", False)])
def test_verdict_status_round_trips_through_json(verdict, status, ok):
    assert (verdict.status, verdict.ok) == (status, ok)
    back = Verdict.from_json(json.loads(json.dumps(verdict.to_json())))
    assert (back.status, back.ok, back.reason) == (status, ok, verdict.reason)
    assert ("status" in verdict.to_json()) == (status == "skip"), "pass and fail follow from ok"


def test_filters_report_skips_as_skips():
    cfg = FilterConfig()
    row = trace(ref=None, task="code", reasoning="```python\nprint(1)\n```")
    v = run_row_filters(row, ["correctness", "code_block"], _params(cfg))
    assert (v["correctness"].status, v["correctness"].ok, v["correctness"].reason) == ("skip", False, "no_reference")
    assert (v["code_block"].status, v["code_block"].ok) == ("skip", True)


ROWS = {
    "clean": trace(reasoning="Add the numbers: 2 + 2 = 4. " * 5),
    "truncated_mixed": trace(reasoning="Add. " + ZH, answer="", truncated=True, finish_reason="length",
                             reasoning_source="unclosed_think"),
    "wrong_and_mixed": trace(reasoning="Add the numbers. " + ZH, answer="\\boxed{5}"),
    "looping_with_code": trace(reasoning=LOOP + "\n```python\nprint(4)\n```"),
    "mixed_then_identity": trace(reasoning="Add the numbers. " + ZH + " As an AI I add."),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_lazy_judging_keeps_the_first_failure(name):
    cfg = FilterConfig()
    names = [n for n in cfg.order if n in ROW_FILTERS and n != "decontam"]
    every = run_row_filters(ROWS[name], names, _params(cfg), all_verdicts=True)
    lazy = run_row_filters(ROWS[name], names, _params(cfg), all_verdicts=False)
    first = lambda vs: next((n for n in names if not vs[n].ok), None)  # noqa: E731
    assert first(lazy) == first(every)
    assert list(lazy) == names and all(v.status != "skip" for v in every.values() if v.reason is None)
    for n in names:
        if lazy[n].status == "skip" and (lazy[n].reason or "").startswith("skipped: rejected by"):
            assert FILTERS[n].skippable and names.index(n) > names.index(first(lazy))
        else:
            assert lazy[n] == every[n], n


def test_lazy_judging_skips_the_detector_on_a_truncated_row():
    started = []
    run_row_filters(ROWS["truncated_mixed"], ["format", "length", "correctness", "language", "repetition"],
                    _params(FilterConfig()), all_verdicts=False, on_start=started.append)
    assert started == ["format", "length", "correctness"]


def _write_run(run_dir, rows: dict) -> None:
    with ShardWriter(run_dir / "traces", TRACE_SCHEMA, rows_per_shard=2) as w:
        for i, row in enumerate(rows.values()):
            p = Prompt(source="test", task="math", problem=f"Problem {i}: what is 2 + 2?", reference_answer="4")
            t = Trace(prompt=p, sample_index=0, teacher_model="t", engine="hf", sampling="{}", messages="[]",
                      reasoning=row["reasoning"], answer=row["answer"], raw_completion="x",
                      reasoning_source=row["reasoning_source"], finish_reason=row["finish_reason"],
                      truncated=row["truncated"], completion_tokens=50)
            w.write_rows([t.to_row()])
        w.close()


def _outcome(run_dir) -> dict:
    rows = read_table(run_dir / "filtered" / "rejected").to_pylist() + read_table(run_dir / "filtered" / "kept").to_pylist()
    return {r["problem"]: (r["kept"], r["reject_reason"], r["pass_rate"]) for r in rows}


def test_the_stage_keeps_the_same_rows_either_way(tmp_path):
    _write_run(tmp_path, ROWS)
    assert main(["filter", str(tmp_path), "--no-progress", "--workers", "1", "--set", "all_verdicts=true"]) == 0
    every, every_stats = _outcome(tmp_path), json.loads((tmp_path / "filtered" / "stats.json").read_text())
    assert main(["filter", str(tmp_path), "--no-progress", "--workers", "1"]) == 0
    lazy_stats = json.loads((tmp_path / "filtered" / "stats.json").read_text())
    assert _outcome(tmp_path) == every and lazy_stats["funnel"] == every_stats["funnel"]
    assert lazy_stats["failed_any"]["language"] < every_stats["failed_any"]["language"]
    assert lazy_stats["skipped"]["language"] >= 2 and "language" not in every_stats.get("skipped", {})


def _slow_identity(trace, prompt, p):
    time.sleep(30)


def test_a_hung_worker_is_charged_to_the_filter_it_was_running(tmp_path, monkeypatch):
    import dataclasses

    slow = dataclasses.replace(FILTERS["identity"], row_function=_slow_identity)
    monkeypatch.setitem(FILTERS, "identity", slow)  # forked workers inherit the patch
    _write_run(tmp_path, {"clean": ROWS["clean"]})
    started = time.perf_counter()
    assert main(["filter", str(tmp_path), "--no-progress", "--workers", "2", "--set", "task_timeout_s=2"]) == 0
    assert time.perf_counter() - started < 25
    [row] = read_table(tmp_path / "filtered" / "rejected").to_pylist()
    assert row["reject_reason"] == "identity"
    assert json.loads(row["verdicts"])["identity"] == {"ok": False, "reason": "worker_timeout"}
