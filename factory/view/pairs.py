"""The viewer's preference pairs (`factory pairs`): a table of them by kind, and one pair's two sides. Read-only
polars scans of RUN_DIR/pairs; a pair's text, like a trace's, is untrusted model output (escaped by the templates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ..core.jsonfiles import read_json_object
from ..storage.rundir import RunDir
from ..storage.shards import check_shards, shard_files
from .data import verdict_list

TABLE = ["kind", "prompt_id", "task", "chosen_sample_index", "rejected_sample_index", "chosen_tokens",
         "rejected_tokens", "rejected_reason"]


class PairsData:
    def __init__(self, run_dir: str | Path):
        self.dir = RunDir(run_dir).pairs
        self.present = (self.dir / "stats.json").exists() and (self.dir / "manifest.json").exists()
        self.files = shard_files(self.dir) if self.present else []
        if self.present:
            check_shards(self.dir)  # a damaged shard is one line at startup, not a broken page

    def stats(self) -> dict[str, Any] | None:
        return read_json_object(self.dir / "stats.json", "pairs statistics", {"by_kind": dict}) if self.present \
            else None

    def _scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.files).with_row_index("index")

    def page(self, kind: str, page: int, size: int) -> tuple[list[dict[str, Any]], int, int]:
        """One page of the pairs (of one kind, or all), how many match, and the page shown (a page past the end
        is the last one)."""
        if not self.files:
            return [], 0, 1
        lf = self._scan()
        if kind:
            lf = lf.filter(pl.col("kind") == kind)
        total = lf.select(pl.len()).collect().item()
        page = max(1, min(page, -(-total // size) or 1))
        rows = lf.select("index", *TABLE).slice((page - 1) * size, size).collect().to_dicts()
        return rows, total, page

    def pair(self, index: int) -> dict[str, Any] | None:
        """One pair whole: its prompt's messages, both sides' text and verdicts."""
        if not self.files:
            return None
        rows = self._scan().filter(pl.col("index") == index).collect().to_dicts()
        if not rows:
            return None
        pair = rows[0]
        for side in ("chosen", "rejected"):
            pair[f"{side}_text"] = "".join(m["content"] or "" for m in pair[side])
            pair[f"{side}_verdict_list"] = verdict_list(pair[f"{side}_verdicts"])
        return pair
