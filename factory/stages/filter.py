"""`factory filter RUN_DIR`: the R1 rejection filters over a run's traces -> filtered/kept, filtered/rejected.

Three streaming passes, memory flat in the number of rows:
1. row filters in worker processes, one batch of rows at a time; verdicts go to a temporary file, and a compact
   summary (prompt, tokens, dedup keys) stays in memory;
2. set filters (dedup, selection, pass rate) on the summaries;
3. the traces again, with `kept`, `reject_reason`, `verdicts` and `pass_rate`, into the output shards.
Everything is written under a temporary directory swapped in at the end: a rerun replaces the outputs whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import FilterConfig
from ..errors import FactoryError
from ..filters import run_row_filters
from ..filters.decontam import DecontamIndex, build_index
from ..filters.setwise import RowSummary, dedup, exact_key, minhash, pass_rates, select
from ..records import TRACE_SCHEMA
from ..rundir import write_resolved_config
from ..shards import ShardWriter, iter_shards, read_manifest, swap_into_place, write_json_atomic
from .filter_stats import FunnelStats, print_stats

FILTERED_SCHEMA = pa.schema(list(TRACE_SCHEMA) + [
    pa.field("kept", pa.bool_(), nullable=False), pa.field("reject_reason", pa.string()),
    pa.field("verdicts", pa.string(), nullable=False), pa.field("pass_rate", pa.float64())])
SET_FILTERS = ("dedup", "selection")

_worker_cfg: FilterConfig | None = None


_worker_index: DecontamIndex | None = None


def _init_worker(cfg_json: dict[str, Any], index: DecontamIndex) -> None:
    global _worker_cfg, _worker_index
    _worker_cfg, _worker_index = FilterConfig.model_validate(cfg_json), index


def judge_batch(rows: list[dict[str, Any]], cfg: FilterConfig | None = None,
                index: DecontamIndex | None = None) -> list[tuple]:
    """Row filters over a batch: (verdicts JSON, first failing filter, correct, tokens, dedup key, minhash)."""
    cfg, index = cfg or _worker_cfg, index or _worker_index
    names = [n for n in cfg.active() if n not in SET_FILTERS]
    params = {n: index if n == "decontam" else getattr(cfg, n) for n in names}
    out = []
    for row in rows:
        verdicts = run_row_filters(row, names, params)
        first = next((n for n in names if not verdicts[n].ok), None)
        correct = _graded(verdicts.get("correctness"))
        tokens = int(verdicts["length"].score or 0) if "length" in verdicts else len(row["raw_completion"])
        key = sig = None
        if first is None and cfg.dedup.enabled and "dedup" in cfg.order:
            key = exact_key(row["reasoning"], row["answer"])
            if cfg.dedup.near:
                sig = minhash(f"{row['reasoning']}\n{row['answer']}", cfg.dedup)
        out.append((json.dumps({n: v.to_json() for n, v in verdicts.items()}), first, correct, tokens, key, sig))
    return out


def _graded(v) -> bool | None:
    """Correct or not; None when the trace could not be checked (it must not count in the pass rate)."""
    if v is None or (v.reason or "").startswith(("no_reference", "unverified")):
        return None
    return v.ok


def run(cfg: FilterConfig) -> dict[str, Any]:
    started = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    traces = run_dir / "traces"
    if not run_dir.is_dir():
        raise FactoryError(f"{run_dir}: no such run directory")
    manifest = read_manifest(traces)  # a run without finished traces fails here, before anything is written
    for _ in iter_shards(traces, TRACE_SCHEMA, columns=["prompt_id"]):
        pass  # check every shard's columns up front: a bad shard must not leave half an output
    tmp = Path(tempfile.mkdtemp(prefix=".filter-", dir=run_dir))
    try:
        summaries = _judge_rows(cfg, traces, tmp / "verdicts.jsonl", manifest["rows"])
        final = _set_filters(cfg, summaries)
        stats = _write_outputs(cfg, traces, tmp, summaries, final)
        stats.seconds = time.perf_counter() - started
        report = stats.to_json(cfg.active())
        write_json_atomic(tmp / "out" / "stats.json", report)
        swap_into_place(tmp / "out", run_dir / "filtered")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_resolved_config(run_dir, "filter", cfg)
    print_stats(report, run_dir / "filtered")
    return report


def _batches(traces: Path, batch_rows: int):
    columns = [f.name for f in TRACE_SCHEMA if f.name != "created_at"]
    for table in iter_shards(traces, TRACE_SCHEMA, columns=columns):
        for batch in table.to_batches(max_chunksize=batch_rows):
            yield batch.to_pylist()


def _judge_rows(cfg: FilterConfig, traces: Path, verdict_file: Path, total: int) -> list[RowSummary]:
    from ..progress import StageProgress

    summaries: list[RowSummary] = []
    workers = cfg.workers or os.cpu_count() or 1
    index = build_index(cfg.decontam)
    with open(verdict_file, "w") as vf, StageProgress("filter", total, cfg.progress) as advance:
        def take(results: list[tuple]) -> None:
            for verdicts, first, correct, tokens, key, sig in results:
                vf.write(json.dumps([verdicts, first]) + "\n")
                summaries.append(RowSummary("", tokens, first is None, correct, key, sig))
            advance(len(results))

        prompt_ids: list[str] = []
        if workers == 1:
            for rows in _batches(traces, cfg.batch_rows):
                prompt_ids += [r["prompt_id"] for r in rows]
                take(judge_batch(rows, cfg, index))
        else:
            with ProcessPoolExecutor(workers, initializer=_init_worker,
                                     initargs=(cfg.model_dump(mode="json"), index)) as pool:
                prompt_ids = _run_pool(pool, _batches(traces, cfg.batch_rows), workers, take)
    for summary, pid in zip(summaries, prompt_ids):
        summary.prompt_id = pid
    return summaries


def _run_pool(pool: Executor, batches, workers: int, take) -> list[str]:
    """Keeps 2 batches per worker in flight, in order, so memory is bounded and output order is the input's."""
    pending: deque[Future] = deque()
    prompt_ids: list[str] = []
    for rows in batches:
        prompt_ids += [r["prompt_id"] for r in rows]
        pending.append(pool.submit(judge_batch, rows))
        if len(pending) >= 2 * workers:
            take(pending.popleft().result())
    while pending:
        take(pending.popleft().result())
    return prompt_ids


def _set_filters(cfg: FilterConfig, rows: list[RowSummary]) -> dict[int, tuple[str, str]]:
    """Row index -> (set filter, reason) for rows that passed the row filters but not a set filter."""
    active = cfg.active()
    final: dict[int, tuple[str, str]] = {}
    if "dedup" in active:
        final.update({i: ("dedup", why) for i, why in dedup(rows, cfg.dedup).items()})
    if "selection" in active:
        alive = [i for i, r in enumerate(rows) if r.passed_rows and i not in final]
        final.update({i: ("selection", why) for i, why in select(rows, alive, pass_rates(rows), cfg.selection).items()})
    return final


def _write_outputs(cfg: FilterConfig, traces: Path, tmp: Path, rows: list[RowSummary],
                   final: dict[int, tuple[str, str]]) -> FunnelStats:
    rates = pass_rates(rows)
    stats = FunnelStats()
    out = tmp / "out"
    out.mkdir()
    extra = {"stage": "filter", "filters": cfg.active()}
    with open(tmp / "verdicts.jsonl") as vf, \
            ShardWriter(out / "kept", FILTERED_SCHEMA, cfg.shard_rows, extra) as kept, \
            ShardWriter(out / "rejected", FILTERED_SCHEMA, cfg.shard_rows, extra) as rejected:
        i = 0
        for table in iter_shards(traces, TRACE_SCHEMA):
            kept_rows, rejected_rows = [], []
            for row in table.to_pylist():
                verdicts_json, first = json.loads(next(vf))
                verdicts = json.loads(verdicts_json)
                set_fail = final.get(i)
                for name in SET_FILTERS:
                    if name in cfg.active() and rows[i].passed_rows:
                        failed = set_fail is not None and set_fail[0] == name
                        verdicts[name] = {"ok": not failed, **({"reason": set_fail[1]} if failed else {})}
                reason = first or (set_fail[0] if set_fail else None)
                row.update(kept=reason is None, reject_reason=reason, verdicts=json.dumps(verdicts),
                           pass_rate=rates.get(row["prompt_id"]))
                stats.add(row, verdicts, reason, rows[i].tokens)
                (rejected_rows if reason else kept_rows).append(row)
                i += 1
            kept.write_rows(kept_rows)
            rejected.write_rows(rejected_rows)
        kept.close()
        rejected.close()
    stats.rates = rates
    return stats
