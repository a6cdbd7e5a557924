"""Where a stage's work runs: an `Executor` object, `Local` (this machine: a teacher in this process, or a
batch API; the row filters in worker processes) or `Ray` (Ray Data over a cluster), picked in one place
(`executor_for`). Each returns its results; none fills in an object of its caller. An executor never imports a
stage; what both run (a teacher's requests into the cache, the row filters over a row group) lives below them,
in `generation` and `filters`.

The stages call three functions, which do what every executor shares (the plan's counts, a budget) and hand
the rest to the executor:
- `generate_missing(cfg, plan, cache)`: every sample of the plan the cache lacks, bought and cached.
- `judge_row_groups(cfg, groups, index)`: the row filters' results for each (path, row group, task), in order.
- `shared_band_keys(cfg, signatures)`: near-dedup's band keys that two rows share (None: the stage finds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ..config.stages import ExecutorConfig, GenerationSettings
from ..filters.config import FilterConfig
from ..filters.decontam import DecontamIndex
from ..generation.budget import Budget
from ..generation.plan import Plan
from ..generation.stats import Bought, GenerationStats
from ..storage.cache import SampleCache


class Executor(Protocol):
    def buy(self, cfg: GenerationSettings, work: Plan, cache: SampleCache, start: GenerationStats,
            budget: Budget | None, adaptive: bool) -> Bought:
        """The plan's samples the cache lacks (`start` counts them), bought into the cache."""

    def judge(self, cfg: FilterConfig, groups: list[tuple[str, int, int]], index: DecontamIndex | None,
              workers: int) -> Iterator[tuple[list[str], list[Any]]]:
        """(prompt ids, RowJudgements) per row group, in the order of `groups`."""

    def band_keys(self, cfg: FilterConfig, signatures: list[bytes]) -> set[tuple[int, int]] | None:
        """Near-dedup's band keys two rows share, where this executor finds them better than the stage."""


def executor_for(ex: ExecutorConfig) -> Executor:
    """The one place that reads `executor.kind`."""
    if ex.kind == "ray":
        from .ray import Ray

        return Ray()
    from .local import Local

    return Local()


def generate_missing(cfg: GenerationSettings, work: Plan, cache: SampleCache, budget: Budget | None = None,
                     adaptive: bool = False) -> Bought:
    """Requests every sample of the plan the cache lacks; each finished one is cached at once (failures are not:
    a rerun tries them again). Returns the counts and usage, and the failures by key. With `adaptive` (a
    GenerateConfig's sampling.adaptive), the plan's counts are decided round by round (`work.counts`), and the
    stats hold the rounds under `adaptive`; with a budget, `stopped_by` says which budget ended it."""
    total = work.samples()
    todo = sum(k not in cache for _, _, keys in work for k in keys) if len(cache) else total
    start = GenerationStats(prompts=len(work), samples=total, cached=total - todo, requested=todo)
    if budget is not None:
        _count_cached(work, cache, budget)
    if not todo and not adaptive:
        return Bought(start)
    bought = executor_for(cfg.executor).buy(cfg, work, cache, start, budget, adaptive)
    if budget is not None and budget.stopped:
        bought.stats.stopped_by = budget.summary()
    return bought


def _count_cached(work: Plan, cache: SampleCache, budget: Budget) -> None:
    """What the run already holds counts against its budget (reading each record only for a token budget)."""
    for _, _, keys in work:
        for k in keys:
            if k in cache:
                budget.add_cached(cache.get(k) if budget.counts_tokens else None)


def judge_row_groups(cfg: FilterConfig, groups: list[tuple[str, int, int]], index: DecontamIndex | None,
                     workers: int) -> Iterator[tuple[list[str], list[Any]]]:
    """(prompt ids, RowJudgements) per row group, in the order of `groups`."""
    return executor_for(cfg.executor).judge(cfg, groups, index, workers)


def shared_band_keys(cfg: FilterConfig, signatures: list[bytes]) -> set[tuple[int, int]] | None:
    """On a cluster with enough rows, a distributed shuffle finds the band keys two rows share; else None, and
    the dedup filter finds them itself."""
    if not cfg.dedup.near:
        return None
    return executor_for(cfg.executor).band_keys(cfg, signatures)
