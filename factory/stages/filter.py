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
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.jsonfiles import write_json_atomic
from ..executors import judge_row_groups, shared_band_keys
from ..filters import SET_FILTERS, Verdict
from ..filters.config import FilterConfig
from ..filters.decontam import build_index
from ..filters.setwise import RowSummary, dedup, pass_rates, select
from ..filters.stats import FilterStats, funnel_stats, print_stats
from ..storage.records import FILTERED_SCHEMA, TRACE_SCHEMA
from ..storage.rundir import RunDir, write_resolved_config
from ..storage.shards import (
    ShardWriter,
    iter_batches,
    iter_shards,
    read_manifest,
    remove_stale_temps,
    shard_files,
    swap_into_place,
)
from .estimates import Estimate, EstimateContext

KIND, ORDER = "filter", 20
Config = FilterConfig
Result = FilterStats
CLI_ARGUMENT = "run_dir"  # `factory filter RUN_DIR [--workers N] [--no-progress] [--executor ray --ray-address A]`
CLI_OPTIONS = ("workers", "progress", "executor.kind=executor", "executor.address=ray-address")
INTERRUPTED = "filtered/ is unchanged (it is replaced only when complete); judge answers are cached"


def resolve(cfg: FilterConfig) -> FilterConfig:
    """The length limit the traces were generated with (when the traces exist), and with a judge, correctness
    leaving what it cannot verify to the judge."""
    manifest = RunDir(cfg.run_dir).traces / "manifest.json"
    return with_judge(with_generation_limit(cfg, read_manifest(manifest.parent) if manifest.exists() else {}))


def up_to_date(cfg: FilterConfig) -> bool:
    return RunDir(cfg.run_dir).filter_stats.exists()


def estimate(cfg: FilterConfig, ctx: EstimateContext) -> Estimate:
    what = ", ".join(cfg.active())
    if "decontam" in cfg.active():
        what += f"; decontaminated against {', '.join(cfg.decontam.benchmarks) or 'nothing (no benchmarks)'}"
    what += f"; length limit {cfg.length.max_tokens or 'the generation limit'}"
    if cfg.executor.kind == "ray":
        what += f"; on Ray ({cfg.executor.address or 'a Ray instance started here'}), dedup shuffled by LSH band"
    upstream = ctx.upstream
    if "selection" in cfg.active() and cfg.selection.enabled:
        upstream = upstream.model_copy(update={"max_per_prompt": cfg.selection.max_per_prompt})
    return Estimate(what=what, upstream=upstream)


def run(cfg: FilterConfig, ctx: RunContext = DIRECT) -> FilterStats:
    started = time.perf_counter()
    rd = RunDir(cfg.run_dir)
    run_dir, traces = rd.root, rd.traces
    if not run_dir.is_dir():
        raise FactoryError(f"{run_dir}: no such run directory")
    manifest = read_manifest(traces)  # a run without finished traces fails here, before anything is written
    cfg = resolve(cfg)
    tasks: set[str] = set()
    teachers: set[str] = set()
    for table in iter_shards(traces, TRACE_SCHEMA, columns=["task", "teacher_model"]):
        tasks.update(table.column(0).unique().to_pylist())  # every shard's columns are checked up front too
        teachers.update(table.column(1).unique().to_pylist())
    _check_priority(cfg, teachers)
    if "correctness" in cfg.active() and "code" in tasks:
        _check_sandbox()
    remove_stale_temps(run_dir, ".filter-")
    tmp = Path(tempfile.mkdtemp(prefix=f".filter-{os.getpid()}-", dir=run_dir))
    try:
        t0 = time.perf_counter()
        summaries = _judge_rows(cfg, traces, tmp / "verdicts.jsonl", manifest["rows"])
        judged, judge_report = _ask_the_judge(cfg, traces, summaries)
        _check_the_judge(judge_report, judged)
        t1 = time.perf_counter()
        final = _set_filters(cfg, traces, summaries)
        t2 = time.perf_counter()
        _write_outputs(cfg, traces, tmp, summaries, final, judged)
        del summaries, final, judged  # a few hundred bytes a row: let the statistics have the memory
        staged = RunDir(tmp)  # the new filtered/ is built beside the old one, then swapped in whole
        report = funnel_stats(staged.filtered, cfg.active(), time.perf_counter() - started)
        report.judge = judge_report
        report.seconds_by_pass = {"row_filters": round(t1 - t0, 2), "set_filters": round(t2 - t1, 2),
                                  "write": round(time.perf_counter() - t2, 2)}
        write_json_atomic(staged.filter_stats, report.to_json())
        swap_into_place(staged.filtered, rd.filtered)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_resolved_config(run_dir, "filter", cfg, ctx)
    print_stats(report, rd.filtered)
    return report


def with_generation_limit(cfg: FilterConfig, manifest: dict[str, Any]) -> FilterConfig:
    """length.max_tokens unset: the limit the traces were generated with (R1's recipe: the filter's length limit is
    the generation limit), read from the shards' manifest."""
    if cfg.length.max_tokens is not None:
        return cfg
    limit = ((manifest.get("config") or {}).get("sampling") or {}).get("max_tokens") or 32768
    return cfg.model_copy(update={"length": cfg.length.model_copy(update={"max_tokens": int(limit)})})


def with_judge(cfg: FilterConfig) -> FilterConfig:
    """With a judge, what correctness cannot verify is the judge's to decide, not a rejection."""
    if not cfg.judge.enabled or not cfg.correctness.reject_unverified:
        return cfg
    return cfg.model_copy(update={"correctness": cfg.correctness.model_copy(update={"reject_unverified": False})})


def _check_sandbox() -> None:
    from ..filters import sandbox

    if sandbox.available():
        problem = sandbox.self_check()
        if problem:
            raise FactoryError(f"sandbox: {problem}")


def _row_groups(traces: Path) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    return [(path, g) for path in shard_files(traces) for g in range(pq.ParquetFile(path).num_row_groups)]


def _judge_rows(cfg: FilterConfig, traces: Path, verdict_file: Path, total: int) -> list[RowSummary]:
    from ..generation.progress import StageProgress

    summaries: list[RowSummary] = []
    workers = cfg.workers or os.cpu_count() or 1
    index = build_index(cfg.decontam)
    groups = [(path, group, task) for task, (path, group) in enumerate(_row_groups(traces))]
    with open(verdict_file, "w") as vf, StageProgress("filter", total, cfg.progress) as advance:
        for pids, judgements in judge_row_groups(cfg, groups, index, workers):
            for pid, j in zip(pids, judgements):
                vf.write(json.dumps([j.verdicts, j.first_failure]) + "\n")
                summaries.append(RowSummary(pid, j.tokens, j.first_failure is None, j.correct, j.dedup_key,
                                            j.bands))
            advance(len(pids))
    return summaries


def _check_priority(cfg: FilterConfig, teachers: set[str]) -> None:
    """A teacher_priority that names no teacher of the run would silently rank nothing."""
    sel = cfg.selection
    if "selection" not in cfg.active() or sel.strategy != "teacher_priority":
        return
    unknown = [t for t in sel.teacher_priority if t not in teachers]
    if unknown:
        raise FactoryError(f"filter: field 'selection.teacher_priority': {unknown[0]!r} is no teacher of "
                           f"{cfg.run_dir} (its traces' teachers: {', '.join(sorted(teachers)) or 'none'})")


def _set_filters(cfg: FilterConfig, traces: Path, rows: list[RowSummary]) -> dict[int, tuple[str, str]]:
    """Row index -> (set filter, reason) for rows that passed the row filters but not a set filter."""
    active = cfg.active()
    final: dict[int, tuple[str, str]] = {}
    if "dedup" in active:
        signatures = [r.signature for r in rows if r.passed_rows and r.signature is not None]
        shared = shared_band_keys(cfg, signatures)
        final.update({i: ("dedup", why) for i, why in dedup(rows, cfg.dedup, shared).items()})
    if "selection" in active:
        alive = [i for i, r in enumerate(rows) if r.passed_rows and i not in final]
        teachers = _column(traces, "teacher_model") if cfg.selection.strategy == "teacher_priority" else None
        final.update({i: ("selection", why)
                      for i, why in select(rows, alive, pass_rates(rows), cfg.selection, teachers).items()})
    return final


def _column(traces: Path, name: str) -> list[str]:
    """One column of every trace, in the order the row filters saw them."""
    import pyarrow.parquet as pq

    return [v for path, g in _row_groups(traces)
            for v in pq.ParquetFile(path).read_row_group(g, columns=[name]).column(0).to_pylist()]


def _ask_the_judge(cfg: FilterConfig, traces: Path, rows: list[RowSummary]
                   ) -> tuple[dict[int, Verdict], dict[str, Any] | None]:
    """The judge model over the rows the row filters kept (in fallback mode, only those correctness could not
    verify); a row it fails no longer takes part in the set filters. Its answers live in the run's cache."""
    if "judge" not in cfg.active():
        return {}, None
    from ..filters.judge import run_judge
    from ..generation.plan import CACHE_FIELDS
    from ..storage.cache import SampleCache

    p = cfg.judge
    wanted = {i for i, r in enumerate(rows) if r.passed_rows and (p.mode == "always" or r.correct is None)}

    def candidates():
        i = 0
        columns = ["prompt_id", "source", "task", "problem", "reference_answer", "tests", "metadata", "reasoning",
                   "answer"]
        for batch in iter_batches(traces, TRACE_SCHEMA, columns=columns, batch_rows=cfg.batch_rows):
            for row in batch.to_pylist():
                _check_aligned(rows, i, row["prompt_id"])
                if i in wanted:
                    yield i, row
                i += 1

    with SampleCache(RunDir(cfg.run_dir).cache, CACHE_FIELDS) as cache:
        verdicts, report = run_judge(p, candidates(), cache, cfg.progress)
    for i, v in verdicts.items():
        if not v.ok:
            rows[i].passed_rows = False
    return verdicts, report


def _check_the_judge(report: dict[str, Any] | None, judged: dict[int, Verdict]) -> None:
    """A judge that failed on most of the calls made is broken (a wrong URL, an expired key, a server down), not
    strict: stop before its rejections replace the filtered output. Failed calls are not cached: a rerun asks."""
    if not report or not report["requested"] or report["errors"] * 2 <= report["judged"]:
        return
    first = next((v.details.get("error") for v in judged.values() if v.reason and "judge_error" in v.reason), "")
    raise FactoryError(f"the judge failed on {report['errors']} of the {report['judged']} traces (first: "
                       f"{first}); the filtered output was left as it was: fix the judge and run filter again")


def _check_aligned(rows: list[RowSummary], i: int, prompt_id: str) -> None:
    """The passes read the traces one after another and meet by row number: a row whose prompt is not the one the
    row filters saw at that number means the traces were read in another order (or changed), and every verdict
    from there on would land on the wrong trace. Stop before anything is written."""
    if i >= len(rows) or rows[i].prompt_id != prompt_id:
        seen = rows[i].prompt_id if i < len(rows) else "no row"
        raise FactoryError(f"filter: row {i} of the traces is prompt {prompt_id}, where the row filters saw "
                           f"{seen}; the traces changed or were read in another order: nothing was written")


def _write_outputs(cfg: FilterConfig, traces: Path, tmp: Path, rows: list[RowSummary],
                   final: dict[int, tuple[str, str]], judged: dict[int, Verdict]) -> None:
    """Pass 3, columnar: the trace columns are never turned into Python objects, only the new columns are."""
    import pyarrow.compute as pc

    rates = pass_rates(rows)
    out = RunDir(tmp)
    out.filtered.mkdir()
    extra = {"stage": "filter", "filters": cfg.active()}
    active_set = [n for n in SET_FILTERS if n in cfg.active()]
    i = 0
    with open(tmp / "verdicts.jsonl") as vf, \
            ShardWriter(out.kept, FILTERED_SCHEMA, cfg.shard_rows, extra) as kept, \
            ShardWriter(out.rejected, FILTERED_SCHEMA, cfg.shard_rows, extra) as rejected:
        for batch in iter_batches(traces, TRACE_SCHEMA, batch_rows=cfg.batch_rows):
            flags, reasons, verdict_col, rate_col = [], [], [], []
            for pid in batch.column("prompt_id").to_pylist():
                _check_aligned(rows, i, pid)
                verdicts, first = json.loads(next(vf))
                if i in judged:
                    verdicts["judge"] = judged[i].to_json()
                    first = first or (None if judged[i].ok else "judge")
                set_fail = final.get(i)
                for name in active_set if rows[i].passed_rows else ():
                    failed = set_fail is not None and set_fail[0] == name
                    verdicts[name] = (Verdict.failed(set_fail[1]) if failed else Verdict.passed()).to_json()
                reason = first or (set_fail[0] if set_fail else None)
                flags.append(reason is None)
                reasons.append(reason)
                verdict_col.append(json.dumps(verdicts))
                rate_col.append(rates.get(pid))
                i += 1
            table = pa.Table.from_batches([batch])
            for name, values in (("kept", flags), ("reject_reason", reasons), ("verdicts", verdict_col),
                                 ("pass_rate", rate_col)):
                table = table.append_column(name, pa.array(values, FILTERED_SCHEMA.field(name).type))
            mask = pa.array(flags, pa.bool_())
            kept.write_table(table.filter(mask))
            rejected.write_table(table.filter(pc.invert(mask)))
        kept.close()
        rejected.close()
