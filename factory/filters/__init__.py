"""Rejection filters: pure functions `(trace, prompt, params) -> Verdict`, in one table by name.

Each filter module declares, beside its function, the settings model of its `filter:` sub-section and its
`FilterSpec`; the table below puts the specs in R1's order, and `config.py` builds the `filter:` section from it.

Row filters judge one trace; set filters (dedup, selection) judge a trace against the rest of the run and live
in `setwise.py`. The same functions serve as eval scorers (`factory eval` calls `correctness`) and as GRPO rewards
(`factory/filters/rewards.py`: accuracy, format, language); no IO, no globals they write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..storage.records import prompt_from_row
from . import basic, correctness, decontam, judge, language, setwise
from .base import FilterSpec, RowFilter, Status, Verdict

# The registry, in R1's order: a row's reject_reason is the first filter in the order that fails it. The one list
# of filter names: the `filter:` section (config.py), its `order`, the verdict columns and the stats follow it.
FILTERS: dict[str, FilterSpec] = {spec.name: spec for spec in (
    basic.FORMAT, basic.LENGTH, correctness.SPEC, language.SPEC, basic.CODE_BLOCK, basic.REPETITION,
    basic.IDENTITY, decontam.SPEC, judge.SPEC, setwise.DEDUP, setwise.SELECTION)}
DEFAULT_ORDER = list(FILTERS)
ROW_FILTERS = tuple(n for n, s in FILTERS.items() if s.kind == "row")
SET_FILTERS = tuple(n for n, s in FILTERS.items() if s.kind == "set")
MODEL_FILTERS = tuple(n for n, s in FILTERS.items() if s.kind == "model")
__all__ = ["DEFAULT_ORDER", "FILTERS", "MODEL_FILTERS", "ROW_FILTERS", "SET_FILTERS", "FilterSpec", "RowFilter",
           "Status", "Verdict", "all_filter_names", "run_row_filters"]


def all_filter_names() -> list[str]:
    return list(FILTERS)


def run_row_filters(row: Mapping[str, Any], names: list[str], params: Mapping[str, Any],
                    all_verdicts: bool = True, on_start: Callable[[str], None] | None = None) -> dict[str, Verdict]:
    """Every named filter's verdict on one row, keyed in `names`' order.

    all_verdicts=False judges lazily without changing the outcome: every filter that is not skippable runs
    first; then the skippable ones run in order until the first failure in `order`, after which they are
    skipped. The first failing filter in order (the row's reject_reason) is the same either way.
    `on_start(name)` is told which filter is about to run (a hung worker's rows are charged to it)."""
    prompt = prompt_from_row(row)

    def judge(name: str) -> Verdict:
        if on_start is not None:
            on_start(name)
        return FILTERS[name].function()(row, prompt, params[name])

    if all_verdicts:
        return {name: judge(name) for name in names}
    done = {name: judge(name) for name in names if not FILTERS[name].skippable}
    out: dict[str, Verdict] = {}
    failed: str | None = None
    for name in names:
        if name in done:
            out[name] = done[name]
        elif failed is None:
            out[name] = judge(name)
        else:
            out[name] = Verdict.skipped(f"skipped: rejected by {failed}")
        if failed is None and not out[name].ok:
            failed = name
    return out
