"""The local executor: a teacher in this process (its own concurrency, or a local engine), and the row filters in
worker processes that die with this one (a hung worker's row group is rejected, charged to its filter)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from typing import Any

from ..cache import SampleCache, cache_record, sampling_column
from ..config import FilterConfig, GenerationSettings
from ..filters.decontam import DecontamIndex
from ..filters.rows import RowJudgement, hung_row_group, init_worker, judge_row_group
from ..generation import Plan, missing_requests, sampling_key, usage_report
from ..progress import GenerationProgress
from ..teachers import Completion, Request, make_teacher
from ..workpool import ordered_map


def generate_here(cfg: GenerationSettings, work: Plan, cache: SampleCache, report: dict[str, Any]) -> dict[str, Any]:
    """Two streaming passes over the plan (one counted, one feeds the teacher as it has room), so memory holds the
    requests in flight, never a list of the plan."""
    teacher = make_teacher(cfg.teacher, cfg.sampling)
    errors: dict[str, Completion] = report["errors"]
    same = {"teacher_model": teacher.model, "engine": teacher.engine,
            "sampling": json.loads(sampling_column(sampling_key(cfg)))}  # the same for every sample
    gen_started = time.perf_counter()
    try:
        with GenerationProgress(report["requested"], teacher.usage, enabled=cfg.progress) as advance:
            def sink(req: Request, c: Completion) -> None:
                key = req.keys[c.sample_index]
                if c.error:
                    errors[key] = c  # not cached: a rerun tries it again
                else:
                    cache.put(key, cache_record(same, c))
                advance()
            teacher.generate(missing_requests(work, cache), sink)
    finally:
        teacher.close()
    report.update(usage_report(cfg, teacher.usage, time.perf_counter() - gen_started))
    return report


def judge_here(cfg: FilterConfig, groups: list[tuple[str, int, int]], index: DecontamIndex | None,
               workers: int) -> Iterator[tuple[list[str], list[RowJudgement]]]:
    """One worker: in this process. More: a pool whose workers each note the filter they are running (one byte
    per row group, written without a lock: one writer each), so a hung one is charged to the right filter."""
    from multiprocessing.sharedctypes import RawArray

    if workers == 1:
        for path, group, task in groups:
            yield judge_row_group(path, group, task, cfg, index)
        return
    running = RawArray("b", max(len(groups), 1))
    yield from ordered_map(judge_row_group, groups, workers, cfg.task_timeout_s,
                           functools.partial(hung_row_group, running), init_worker,
                           (cfg.model_dump(mode="json"), index, running))
