"""The local executor: a teacher in this process (its own concurrency, or a local engine), and the row filters in
worker processes that die with this one (a hung worker's row group is rejected, charged to its filter)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Iterator

from ..config.stages import GenerationSettings
from ..core.workpool import ordered_map
from ..filters.config import FilterConfig
from ..filters.decontam import DecontamIndex
from ..filters.rows import RowJudgement, hung_row_group, init_worker, judge_row_group
from ..generation.budget import Budget
from ..generation.plan import Plan, missing_requests, sampling_key
from ..generation.progress import GenerationProgress, starting
from ..generation.stats import Bought, GenerationStats
from ..storage.cache import SampleCache, cache_record, sampling_column
from ..teachers import Completion, Request, make_teacher, resolve_engine


class Local:
    """This machine: the teacher in this process (or a provider's batch API), the row filters in worker
    processes."""

    def buy(self, cfg: GenerationSettings, work: Plan, cache: SampleCache, start: GenerationStats,
            budget: Budget | None, adaptive: bool) -> Bought:
        if cfg.teacher.batch:
            from .batch import generate_in_batches

            return generate_in_batches(cfg, work, cache, start, budget)
        return generate_here(cfg, work, cache, start, budget, adaptive)

    def judge(self, cfg: FilterConfig, groups: list[tuple[str, int, int]], index: DecontamIndex | None,
              workers: int) -> Iterator[tuple[list[str], list[RowJudgement]]]:
        return judge_here(cfg, groups, index, workers)

    def band_keys(self, cfg: FilterConfig, signatures: list[bytes]) -> set[tuple[int, int]] | None:
        return None  # the dedup filter finds them in this process


def generate_here(cfg: GenerationSettings, work: Plan, cache: SampleCache, start: GenerationStats,
                  budget: Budget | None = None, adaptive: bool = False) -> Bought:
    """Streams the plan to one teacher (made when the first sample is wanted, kept for every round), so memory
    holds the requests in flight, never a list of the plan."""
    bought = Bought(start.model_copy())
    stats = bought.stats
    buyer = Buyer(cfg, cache, bought.errors, budget)
    try:
        if adaptive:
            from .adaptive import Rounds

            stats.adaptive = Rounds(cfg, work, cache, budget).run(buyer.buy)
            stats.samples, stats.cached = work.samples(), max(0, work.samples() - buyer.requested)
        else:
            buyer.buy(work, stats.requested, "generate")
    finally:
        buyer.close()
    stats.requested = buyer.tried  # sent and answered (or failed): a budget may stop short of the plan
    if buyer.teacher is not None:
        bought.stats = stats.with_usage(cfg, buyer.teacher.usage, buyer.seconds)
    return bought


class Buyer:
    """One teacher for a stage's requests, round after round; each finished sample is cached at once."""

    def __init__(self, cfg: GenerationSettings, cache: SampleCache, errors: dict[str, Completion],
                 budget: Budget | None):
        self.cfg, self.cache, self.errors, self.budget = cfg, cache, errors, budget
        self.teacher = None
        self.requested, self.seconds = 0, 0.0
        self.tried = 0  # samples sent whose answer (or failure) came back

    def buy(self, work: Iterable[tuple], todo: int, label: str) -> None:
        if self.teacher is None:
            t = self.cfg.teacher
            with starting(f"{resolve_engine(t.engine, t.model)}:{t.model}", enabled=self.cfg.progress):
                self.teacher = make_teacher(t, self.cfg.sampling)
            self.same = {"teacher_model": self.teacher.model, "engine": self.teacher.engine,
                         "sampling": json.loads(sampling_column(sampling_key(self.cfg)))}  # alike for every sample
        started = time.perf_counter()
        with GenerationProgress(todo, self.teacher.usage, enabled=self.cfg.progress, label=label,
                                max_tokens=self.cfg.sampling.max_tokens) as advance:
            def sink(req: Request, c: Completion) -> None:
                key = req.keys[c.sample_index]
                if c.error:
                    self.errors[key] = c  # not cached: a rerun (or the next round) tries it again
                else:
                    self.cache.put(key, cache_record(self.same, c))
                    self.errors.pop(key, None)
                if self.budget is not None:
                    self.budget.record(c, req)
                self.tried += 1
                advance()
            requests = missing_requests(work, self.cache)
            if self.budget is not None:
                requests = self.budget.admit(requests, can_wait=getattr(self.teacher, "waits_for_room", False))
            self.teacher.generate(requests, sink)
        self.requested += todo
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        if self.teacher is not None:
            self.teacher.close()


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
