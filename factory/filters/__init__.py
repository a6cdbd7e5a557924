"""Rejection filters: pure functions `(trace, prompt, params) -> Verdict`, registered by name.

Row filters judge one trace; set filters (dedup, selection) judge a trace against the rest of the run and live
in `setwise.py`. The same functions serve as eval scorers and GRPO rewards: no IO, no globals they write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from ..records import Prompt


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None  # why it failed (or was skipped); None when it passed plainly
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


RowFilter = Callable[[Mapping[str, Any], Prompt, Any], Verdict]
ROW_FILTERS: dict[str, RowFilter] = {}


def row_filter(name: str) -> Callable[[RowFilter], RowFilter]:
    def register(fn: RowFilter) -> RowFilter:
        ROW_FILTERS[name] = fn
        return fn
    return register


SET_FILTERS = ("dedup", "selection")


def all_filter_names() -> list[str]:
    _load_all()
    return [*ROW_FILTERS, *SET_FILTERS]


def _load_all() -> None:
    from . import basic, correctness, decontam, language  # noqa: F401  (importing registers them)


def run_row_filters(row: Mapping[str, Any], names: list[str], params: Mapping[str, BaseModel]) -> dict[str, Verdict]:
    _load_all()
    prompt = Prompt(**{k: row[k] for k in ("source", "task", "problem", "reference_answer", "tests", "metadata",
                                           "prompt_id")})
    return {name: ROW_FILTERS[name](row, prompt, params[name]) for name in names}
