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

from ..filters import FILTERS
from ..shards import read_manifest

_VERDICT = pl.Struct({"ok": pl.Boolean, "status": pl.String, "reason": pl.String, "score": pl.Float64})
VERDICTS = pl.Struct({name: _VERDICT for name in FILTERS})
STAT_COLUMNS = ["prompt_id", "task", "source", "kept", "reject_reason", "verdicts", "pass_rate", "completion_tokens"]


def scan_filtered(filtered: Path, splits: tuple[str, ...] = ("kept", "rejected")) -> pl.LazyFrame:
    """The filtered shards (the files their manifests list), lazily; select columns before collecting."""
    files = [str(filtered / split / f["file"]) for split in splits for f in read_manifest(filtered / split)["files"]]
    return pl.scan_parquet(files)


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


def funnel_stats(filtered: Path, order: list[str], seconds: float) -> dict[str, Any]:
    df = with_tokens(scan_filtered(filtered).select(STAT_COLUMNS)).drop("verdicts").collect()
    verdict = lambda name, field: pl.col("v").struct.field(name).struct.field(field)  # noqa: E731
    rejected = dict(df.filter(~pl.col("kept")).group_by("reject_reason").len().iter_rows())
    counts = df.select([(verdict(n, "ok") == False).sum().alias(f"fail:{n}") for n in order]  # noqa: E712
                       + [(verdict(n, "status") == "skip").sum().alias(f"skip:{n}") for n in order]).row(0, named=True)
    rates = df.filter(pl.col("pass_rate").is_not_null()).unique("prompt_id", keep="last", maintain_order=True)
    by = lambda key: {k: round(v, 4) for k, v in sorted(  # noqa: E731
        rates.group_by(key).agg(pl.col("pass_rate").mean()).iter_rows())}
    kept = int(df["kept"].sum())
    return {
        "funnel": {"in": df.height, "rejected_by": {n: rejected.get(n, 0) for n in order}, "kept": kept},
        "failed_any": {n: counts[f"fail:{n}"] for n in order},
        "skipped": {n: counts[f"skip:{n}"] for n in order if counts[f"skip:{n}"]},  # not judged, or not applicable
        "reasons": _reasons(df, order),
        "pass_rate": {"by_task": by("task"), "by_source": by("source"), "prompts": rates.height},
        "tokens": {"kept": percentiles(df.filter(pl.col("kept"))["tokens"]),
                   "rejected": percentiles(df.filter(~pl.col("kept"))["tokens"])},
        "seconds": round(seconds, 2), "rows_per_s": round(df.height / max(seconds, 1e-9), 1),
    }


def _reasons(df: pl.DataFrame, order: list[str]) -> dict[str, int]:
    """`filter: reason` -> rows, over every failing verdict; most frequent first."""
    parts = [df.select(pl.col("v").struct.field(n).alias("x")).filter(pl.col("x").struct.field("ok") == False)  # noqa: E712
             .select(reason=pl.lit(f"{n}: ") + pl.col("x").struct.field("reason").fill_null("failed")) for n in order]
    if not parts:
        return {}
    counts = pl.concat(parts).group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    return dict(counts.iter_rows())


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
