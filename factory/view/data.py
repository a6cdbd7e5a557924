"""What the viewer reads, as polars lazy scans over the run's shards: a page of the table reads the small
columns of the rows it shows (the reasoning only when a search asks for it, or for the one trace on screen).
Read-only: nothing here opens a file for writing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..core.jsonfiles import read_json_object
from ..storage.records import FILTERED_SCHEMA
from ..storage.rundir import RunDir
from ..storage.shards import check_shards, shard_files

MAX_PAGE = 10**9  # a page number beyond any run; larger ones overflow the scan's offset
LIST_COLUMNS = ["prompt_id", "sample_index", "task", "source", "problem", "kept", "reject_reason",
                "completion_tokens", "pass_rate", "finish_reason"]


@dataclass
class Query:
    """The table's filters, as they come from the URL."""

    split: str = "all"  # all | kept | rejected
    reason: str = ""
    task: str = ""
    source: str = ""
    q: str = ""
    min_tokens: int | None = None
    max_tokens: int | None = None
    min_rate: float | None = None
    max_rate: float | None = None
    page: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: Any) -> Query:
        def num(name: str, kind: type) -> Any:
            value = (args.get(name) or "").strip()
            try:
                return kind(value) if value else None
            except ValueError:
                return None

        split = args.get("split", "all")
        return cls(split=split if split in ("all", "kept", "rejected") else "all",
                   reason=args.get("reason", ""), task=args.get("task", ""), source=args.get("source", ""),
                   q=args.get("q", "")[:200], min_tokens=num("min_tokens", int), max_tokens=num("max_tokens", int),
                   min_rate=num("min_rate", float), max_rate=num("max_rate", float),
                   page=min(max(1, num("page", int) or 1), MAX_PAGE))

    def params(self, **change: Any) -> dict[str, Any]:
        """The query as URL parameters (empty ones left out), with some changed."""
        d = {k: getattr(self, k) for k in ("split", "reason", "task", "source", "q", "min_tokens", "max_tokens",
                                           "min_rate", "max_rate", "page")}
        d.update(change)
        return {k: v for k, v in d.items() if v not in (None, "", "all") and not (k == "page" and v == 1)}


class RunData:
    def __init__(self, run_dir: str | Path):
        self.rd = RunDir(run_dir)
        self.filtered = (self.rd.kept / "manifest.json").exists()
        splits = ("kept", "rejected") if self.filtered else ("traces",)
        dirs = [self.rd.filtered / s for s in splits] if self.filtered else [self.rd.traces]
        self.files = [path for d in dirs if (d / "manifest.json").exists() for path in shard_files(d)]
        for d in dirs:  # every shard's footer, once: a damaged run is one line at startup, not a broken page
            if (d / "manifest.json").exists():
                check_shards(d)
        self._choices: dict[str, list[str]] | None = None

    def scan(self) -> pl.LazyFrame:
        if not self.files:  # nothing generated yet: an empty table, not an error
            return pl.from_arrow(FILTERED_SCHEMA.empty_table()).lazy()
        lf = pl.scan_parquet(self.files)
        if not self.filtered:  # generated but not filtered yet: everything is "not judged"
            lf = lf.with_columns(kept=pl.lit(None, pl.Boolean), reject_reason=pl.lit(None, pl.String),
                                 verdicts=pl.lit("{}"), pass_rate=pl.lit(None, pl.Float64))
        return lf

    def stats(self) -> dict[str, Any] | None:
        path = self.rd.filter_stats
        return read_json_object(path, "filter statistics", {"funnel": dict}) if path.exists() else None

    def adaptive(self) -> dict[str, Any] | None:
        """Adaptive sampling's stats from the generate stage, when the run sampled adaptively."""
        path = self.rd.generate_stats
        if not path.exists():
            return None
        stats = read_json_object(path, "generation statistics", {})
        return stats.get("adaptive") if isinstance(stats.get("adaptive"), dict) else None

    def choices(self) -> dict[str, list[str]]:
        """The tasks, sources and reject reasons there are, for the filter form (read once: a run directory
        does not change under a read-only viewer, and the scan would cost every page)."""
        if self._choices is None:
            lf = self.scan()
            self._choices = {c: sorted(v for v in lf.select(pl.col(c).unique()).collect()[c].to_list() if v)
                             for c in ("task", "source", "reject_reason")}
        return self._choices

    def page(self, query: Query, size: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the table, and how many rows match; a page past the end is the last one."""
        lf = self._filtered(query)
        last = lambda total: max(1, -(-total // size))  # noqa: E731
        if not query.q:  # small columns only: counting and slicing are two cheap scans
            total = lf.select(pl.len()).collect().item()
            query.page = min(query.page, last(total))
            page = lf.select(LIST_COLUMNS).slice((query.page - 1) * size, size)
        else:  # a search reads the text once, keeping row numbers; the page is then read by number
            matches = lf.select("_row").collect()["_row"]
            query.page = min(query.page, last(len(matches)))
            total, wanted = len(matches), matches.slice((query.page - 1) * size, size)
            page = self.scan().with_row_index("_row").filter(pl.col("_row").is_in(wanted.implode())).select(
                LIST_COLUMNS)
        return page.with_columns(pl.col("problem").str.slice(0, 160)).collect().to_dicts(), total

    def _filtered(self, query: Query) -> pl.LazyFrame:
        lf = self.scan().with_row_index("_row")
        conditions = []
        if query.split != "all" and self.filtered:
            conditions.append(pl.col("kept") == (query.split == "kept"))
        for column, value in (("reject_reason", query.reason), ("task", query.task), ("source", query.source)):
            if value:
                conditions.append(pl.col(column) == value)
        tokens = pl.col("completion_tokens")
        if query.min_tokens is not None:
            conditions.append(tokens >= query.min_tokens)
        if query.max_tokens is not None:
            conditions.append(tokens <= query.max_tokens)
        if query.min_rate is not None:
            conditions.append(pl.col("pass_rate") >= query.min_rate)
        if query.max_rate is not None:
            conditions.append(pl.col("pass_rate") <= query.max_rate)
        if query.q:  # a literal (never a user's regex), case-insensitive for ASCII: Aho-Corasick, not a regex
            conditions.append(pl.any_horizontal(
                pl.col(c).fill_null("").str.contains_any([query.q], ascii_case_insensitive=True)
                for c in ("problem", "reasoning", "answer")))
        return lf.filter(pl.all_horizontal(conditions)) if conditions else lf

    def prompt_samples(self, prompt_id: str) -> list[dict[str, Any]]:
        """Every sample of one prompt, whole, by sample index."""
        rows = self.scan().filter(pl.col("prompt_id") == prompt_id).sort("sample_index").collect().to_dicts()
        for row in rows:
            row["verdict_list"] = verdict_list(row.get("verdicts"))
        return rows

    def evals(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.rd.eval.glob("*.json")) if self.rd.eval.is_dir() else []:
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(result, dict) and "metrics" in result and "problems" in result:
                out.append({"name": path.stem, "result": result})
        return out

    def eval_result(self, name: str) -> dict[str, Any] | None:
        return next((e["result"] for e in self.evals() if e["name"] == name), None)

    def ablation(self) -> dict[str, Any] | None:
        """An ablation's results (`factory view runs/ablate/NAME`), when this directory holds one."""
        path = self.rd.root / "results.json"
        if not path.is_file():
            return None
        result = read_json_object(path, "ablation results", {})
        return result if isinstance(result.get("variants"), list) and "base" in result else None

    def ablation_png(self) -> Path | None:
        path = self.rd.root / "ablation.png"
        return path if path.is_file() and self.ablation() is not None else None

    def compare_png(self) -> Path | None:
        path = self.rd.eval / "compare.png"
        return path if path.is_file() else None


def verdict_list(raw: str | None) -> list[dict[str, Any]]:
    """The verdicts column as rows for a table: name, status, reason, score, details (as JSON text)."""
    try:
        verdicts = json.loads(raw or "{}")
    except ValueError:
        return [{"name": "verdicts", "status": "fail", "reason": "unreadable", "score": None, "details": raw}]
    out = []
    for name, v in verdicts.items():
        status = v.get("status") or ("pass" if v.get("ok") else "fail")
        details = v.get("details")
        out.append({"name": name, "status": status, "reason": v.get("reason"), "score": v.get("score"),
                    "details": json.dumps(details, ensure_ascii=False, indent=1) if details else ""})
    return out
