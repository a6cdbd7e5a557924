"""The filter stage's statistics: the funnel, reasons, pass rates by task and source, token percentiles."""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def percentiles(values: array) -> dict[str, int]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p10": pick(0.10), "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


@dataclass
class FunnelStats:
    rows: int = 0
    kept: int = 0
    first_fail: Counter = field(default_factory=Counter)
    any_fail: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    tokens_kept: array = field(default_factory=lambda: array("q"))
    tokens_rejected: array = field(default_factory=lambda: array("q"))
    prompt_group: dict[str, tuple[str, str]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, prompt_id: str, task: str, source: str, verdicts: dict[str, dict], reason: str | None,
            tokens: int) -> None:
        self.rows += 1
        self.prompt_group[prompt_id] = (task, source)
        for name, v in verdicts.items():
            if v.get("status") == "skip":
                self.skipped[name] += 1
            if not v.get("ok"):
                self.any_fail[name] += 1
                self.reasons[f"{name}: {v.get('reason') or 'failed'}"] += 1
        if reason is None:
            self.kept += 1
            self.tokens_kept.append(tokens)
        else:
            self.first_fail[reason] += 1
            self.tokens_rejected.append(tokens)

    def _rates_by(self, index: int) -> dict[str, float]:
        groups: dict[str, list[float]] = defaultdict(list)
        for pid, rate in self.rates.items():
            groups[self.prompt_group[pid][index]].append(rate)
        return {k: round(sum(v) / len(v), 4) for k, v in sorted(groups.items())}

    def to_json(self, order: list[str]) -> dict[str, Any]:
        return {
            "funnel": {"in": self.rows, "rejected_by": {n: self.first_fail.get(n, 0) for n in order},
                       "kept": self.kept},
            "failed_any": {n: self.any_fail.get(n, 0) for n in order},
            "skipped": {n: self.skipped[n] for n in order if self.skipped.get(n)},  # not judged, or not applicable
            "reasons": dict(self.reasons.most_common()),
            "pass_rate": {"by_task": self._rates_by(0), "by_source": self._rates_by(1), "prompts": len(self.rates)},
            "tokens": {"kept": percentiles(self.tokens_kept), "rejected": percentiles(self.tokens_rejected)},
            "seconds": round(self.seconds, 2), "rows_per_s": round(self.rows / max(self.seconds, 1e-9), 1),
        }


def print_stats(report: dict[str, Any], where: Path) -> None:
    table = Table(title=f"filter -> {where}")
    table.add_column("step")
    table.add_column("rows", justify="right")
    table.add_column("rejected (first)", justify="right")
    table.add_column("failing (any)", justify="right")
    funnel = report["funnel"]
    remaining = funnel["in"]
    table.add_row("in", str(remaining), "", "")
    for name, rejected in funnel["rejected_by"].items():
        remaining -= rejected
        table.add_row(name, str(remaining), str(rejected), str(report["failed_any"].get(name, 0)))
    table.add_row("[bold]kept", f"[bold]{funnel['kept']}", "", "")
    console = Console(stderr=True)
    console.print(table)
    rates = report["pass_rate"]["by_task"]
    if rates:
        console.print("pass rate by task: " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    console.print(f"{report['rows_per_s']} rows/s; stats in {where / 'stats.json'}")
