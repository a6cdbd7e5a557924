"""The row filters over a row group of traces: what every executor runs, in a worker process, a Ray task, or
the stage's own process. A worker reads its row group itself, so only small results (`RowJudgement`) cross the
process boundary, never trace text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..storage.records import TRACE_SCHEMA
from . import FILTERS, ROW_FILTERS, Verdict, run_row_filters
from .basic import count_tokens
from .config import FilterConfig
from .decontam import DecontamIndex
from .setwise import exact_key, lsh_bands


@dataclass
class RowJudgement:
    """What a worker sends back for one row: small, the trace text stays in the worker."""

    verdicts: dict[str, dict[str, Any]]  # filter -> Verdict.to_json()
    first_failure: str | None  # the row's reject_reason, as far as the row filters go
    correct: bool | None  # for the pass rate; None when correctness could not judge it
    tokens: int
    dedup_key: str | None = None
    bands: bytes | None = None  # LSH band keys, for near-dedup


_worker_cfg: FilterConfig | None = None
_worker_index: DecontamIndex | None = None
_running: Any = None  # shared bytes: the filter (1 + its position in FILTERS) each row group is running


def init_worker(cfg_json: dict[str, Any], index: DecontamIndex, running: Any) -> None:
    global _worker_cfg, _worker_index, _running
    _worker_cfg, _worker_index, _running = FilterConfig.model_validate(cfg_json), index, running


def judge_batch(rows: list[dict[str, Any]], cfg: FilterConfig | None = None, index: DecontamIndex | None = None,
                on_start: Callable[[str], None] | None = None) -> list[RowJudgement]:
    """Row filters over a batch of rows."""
    cfg, index = cfg or _worker_cfg, index or _worker_index
    names = [n for n in cfg.active() if n in ROW_FILTERS]
    params = {n: index if n == "decontam" else getattr(cfg, n) for n in names}
    out = []
    for row in rows:
        verdicts = run_row_filters(row, names, params, cfg.all_verdicts, on_start)
        first = next((n for n in names if not verdicts[n].ok), None)
        j = RowJudgement({n: v.to_json() for n, v in verdicts.items()}, first, _graded(verdicts.get("correctness")),
                         int(verdicts["length"].score or 0) if "length" in verdicts else count_tokens(row)[0])
        if first is None and cfg.dedup.enabled and "dedup" in cfg.order:
            j.dedup_key = exact_key(row["reasoning"], row["answer"])
            if cfg.dedup.near:
                j.bands = lsh_bands(f"{row['reasoning']}\n{row['answer']}", cfg.dedup)
        out.append(j)
    return out


WORKER_COLUMNS = [f.name for f in TRACE_SCHEMA if f.name not in ("created_at", "messages")]
FILTER_NAMES = list(FILTERS)
_FILTER_CODE = {name: 1 + i for i, name in enumerate(FILTER_NAMES)}  # 0: no filter begun yet


def judge_row_group(path: str, group: int, task: int = 0, cfg: FilterConfig | None = None,
                    index: DecontamIndex | None = None) -> tuple[list[str], list[RowJudgement]]:
    """A worker reads its row group itself: only small results cross the process boundary, not trace text."""
    import pyarrow.parquet as pq

    def running(name: str) -> None:
        if _running is not None:
            _running[task] = _FILTER_CODE[name]

    rows = pq.ParquetFile(path).read_row_group(group, columns=WORKER_COLUMNS).to_pylist()
    return [r["prompt_id"] for r in rows], judge_batch(rows, cfg, index, running)


def _graded(v: Verdict | None) -> bool | None:
    """Correct or not; None when the trace could not be checked (it must not count in the pass rate)."""
    if v is None or v.status == "skip":
        return None
    return v.status == "pass"


def hung_row_group(running, task: tuple[str, int, int]) -> tuple[list[str], list[RowJudgement]]:
    """A row group whose worker hung or died: its rows are rejected, not lost, and charged to the filter that
    was running (or to the first one, when the worker died before it began)."""
    import pyarrow.parquet as pq

    path, group, index = task
    name = FILTER_NAMES[running[index] - 1] if running[index] else "format"
    pids = pq.ParquetFile(path).read_row_group(group, columns=["prompt_id"]).column(0).to_pylist()
    verdict = {name: Verdict.failed("worker_timeout").to_json()}
    return pids, [RowJudgement(verdict, name, None, 0) for _ in pids]
