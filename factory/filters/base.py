"""What every filter is: a `Verdict` on a trace, and a `FilterSpec` that names the filter, its settings model and
its function. Each filter module declares its settings and spec beside its function; `factory/filters/__init__.py`
lists the specs in R1's order, and `factory/filters/config.py` builds the `filter:` section from that list."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ..storage.records import Prompt

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
    """One filter: its name (its key in the `filter:` section and in `order`), its settings model, whether it
    judges a row, the set, or calls a model (the judge, run by the stage), its function (a row filter's), and its
    cost. `cheap` filters judge every row; `expensive` ones skip rows an earlier filter rejected, unless `needed`
    (correctness: the pass rate is over every sample of a prompt, so it is judged on every row)."""

    name: str
    params: type[BaseModel]
    kind: Literal["row", "model", "set"]
    row_function: RowFilter | None = None
    cost: Literal["cheap", "expensive"] = "cheap"
    needed: bool = False

    @property
    def skippable(self) -> bool:
        return self.kind == "row" and self.cost == "expensive" and not self.needed

    def function(self) -> RowFilter:
        if self.row_function is None:
            raise TypeError(f"{self.name} is a {self.kind} filter, run by the filter stage")
        return self.row_function
