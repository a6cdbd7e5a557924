"""The filter stage's statistics: the funnel, reasons, pass rates by task and source, token percentiles.

Computed by polars from the filtered shards themselves (a lazy scan of the small columns: a million rows never
load the reasoning), so stats.json says what the shards hold, and the card can recompute any of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from ..core.results import StageResult
from ..storage.shards import shard_files
from . import FILTERS


class FilterStats(StageResult):
    """The filter stage's result (filtered/stats.json): the funnel in the run's filter order, each filter's
    failures and skips, the reasons, pass rates, token percentiles, per teacher, and how long each pass took."""

    SUMMARY = ("in", "kept")

    order: list[str]  # the run's filter order (the JSON's keys are sorted: readers follow this list)
    funnel: dict[str, Any]  # in, rejected_by (filter -> rows it was first to reject), kept
    failed_any: dict[str, int]
    skipped: dict[str, int]  # not judged, or not applicable
    reasons: dict[str, int]
    pass_rate: dict[str, Any]  # by_task, by_source, prompts
    tokens: dict[str, dict[str, int]]  # kept / rejected -> percentiles
    by_teacher: dict[str, dict[str, Any]]
    seconds: float
    rows_per_s: float
    judge: dict[str, Any] | None = None
    seconds_by_pass: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        return {"in": self.funnel["in"], "kept": self.funnel["kept"]}

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        return f"kept {s.get('kept')} of {s.get('in')}"

_VERDICT = pl.Struct({"ok": pl.Boolean, "status": pl.String, "reason": pl.String, "score": pl.Float64})
VERDICTS = pl.Struct({name: _VERDICT for name in FILTERS})
STAT_COLUMNS = ["prompt_id", "task", "source", "kept", "reject_reason", "verdicts", "pass_rate", "completion_tokens",
                "teacher_model"]


def scan_filtered(filtered: Path, splits: tuple[str, ...] = ("kept", "rejected")) -> pl.LazyFrame:
    """The filtered shards (the files their manifests list), lazily; select columns before collecting."""
    return pl.scan_parquet([path for split in splits for path in shard_files(filtered / split)])


def prompt_pass_rates(filtered: Path) -> dict[str, float]:
    """prompt_id -> the share of its samples the correctness filter passed, for the prompts it graded."""
    rates = (scan_filtered(filtered).select("prompt_id", "pass_rate").filter(pl.col("pass_rate").is_not_null())
             .unique("prompt_id").collect())
    return dict(zip(rates["prompt_id"].to_list(), rates["pass_rate"].to_list()))


def with_tokens(lf: pl.LazyFrame) -> pl.LazyFrame:
    """`v`: the decoded verdicts; `tokens`: the length filter's count (the teacher's completion tokens, or an
    estimate), else the teacher's count."""
    lf = lf.with_columns(v=pl.col("verdicts").str.json_decode(VERDICTS))
    return lf.with_columns(tokens=pl.coalesce(pl.col("v").struct.field("length").struct.field("score").cast(pl.Int64),
                                              pl.col("completion_tokens").cast(pl.Int64)))


def percentiles(values: pl.Series) -> dict[str, int]:
    values = values.drop_nulls().sort()
    if values.is_empty():
        return {}
    n = len(values)
    pick = lambda q: int(values[min(n - 1, int(q * n))])  # noqa: E731
    return {"p10": pick(0.10), "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": int(values[-1])}


def funnel_stats(filtered: Path, order: list[str], seconds: float) -> FilterStats:
    """Each statistic is a streaming aggregation over the shards' small columns (the verdicts JSON decoded a
    chunk at a time): what is held whole is one token count per row, never the verdicts."""
    verdict = lambda name, field: pl.col("v").struct.field(name).struct.field(field)  # noqa: E731
    lf = with_tokens(scan_filtered(filtered).select(STAT_COLUMNS))
    totals = lf.select(pl.len().alias("rows"), pl.col("kept").sum().alias("kept"),
                       *[(verdict(n, "ok") == False).sum().alias(f"fail:{n}") for n in order],  # noqa: E712
                       *[(verdict(n, "status") == "skip").sum().alias(f"skip:{n}") for n in order])
    rejected = lf.filter(~pl.col("kept")).group_by("reject_reason").len()
    why = [pl.when(verdict(n, "ok") == False).then(pl.lit(f"{n}: ") + verdict(n, "reason").fill_null("failed"))  # noqa: E712
           for n in order]
    reasons = (lf.select(reason=pl.concat_list(why) if why else pl.lit(None, pl.List(pl.String)))
               .explode("reason").drop_nulls().group_by("reason").len())
    prompts = (lf.filter(pl.col("pass_rate").is_not_null())
               .group_by("prompt_id").agg(pl.col("task", "source", "pass_rate").last()))
    tokens = lf.select("kept", "tokens")
    teachers = lf.group_by("teacher_model").agg(pl.len().alias("in"), pl.col("kept").sum().alias("kept"),
                                                pl.col("tokens").filter(pl.col("kept")).mean().alias("tokens"))
    # One at a time: collected together (pl.collect_all) they ran side by side and held 3x the memory.
    totals, rejected, reasons, prompts, tokens, teachers = (
        q.collect(engine="streaming") for q in (totals, rejected, reasons, prompts, tokens, teachers))
    t = totals.row(0, named=True)
    rejected = dict(rejected.iter_rows())
    by = lambda key: {k: round(v, 4) for k, v in sorted(  # noqa: E731
        prompts.group_by(key).agg(pl.col("pass_rate").mean()).iter_rows())}
    return FilterStats.model_validate({
        "order": order,
        "funnel": {"in": t["rows"], "rejected_by": {n: rejected.get(n, 0) for n in order}, "kept": t["kept"] or 0},
        "failed_any": {n: t[f"fail:{n}"] or 0 for n in order},
        "skipped": {n: t[f"skip:{n}"] for n in order if t[f"skip:{n}"]},
        "reasons": dict(reasons.sort(["len", "reason"], descending=[True, False]).iter_rows()),
        "pass_rate": {"by_task": by("task"), "by_source": by("source"), "prompts": prompts.height},
        "tokens": {"kept": percentiles(tokens.filter(pl.col("kept"))["tokens"]),
                   "rejected": percentiles(tokens.filter(~pl.col("kept"))["tokens"])},
        "by_teacher": {r["teacher_model"]: {"in": r["in"], "kept": r["kept"] or 0,
                                            "kept_share": round((r["kept"] or 0) / r["in"], 4),
                                            "mean_kept_tokens": round(r["tokens"]) if r["tokens"] else None}
                       for r in teachers.sort("teacher_model").iter_rows(named=True) if r["teacher_model"]},
        "seconds": round(seconds, 2), "rows_per_s": round(t["rows"] / max(seconds, 1e-9), 1),
    })


def print_stats(report: FilterStats, where: Path) -> None:
    table = Table(title=f"filter -> {where}")
    table.add_column("step")
    table.add_column("rows", justify="right")
    table.add_column("rejected (first)", justify="right")
    table.add_column("failing (any)", justify="right")
    funnel = report.funnel
    remaining = funnel["in"]
    table.add_row("in", str(remaining), "", "")
    for name, rejected in funnel["rejected_by"].items():
        remaining -= rejected
        table.add_row(name, str(remaining), str(rejected), str(report.failed_any.get(name, 0)))
    table.add_row("[bold]kept", f"[bold]{funnel['kept']}", "", "")
    console = Console(stderr=True)
    console.print(table)
    rates = report.pass_rate["by_task"]
    if rates:
        console.print("pass rate by task: " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    console.print(f"{report.rows_per_s} rows/s; stats in {where / 'stats.json'}")
