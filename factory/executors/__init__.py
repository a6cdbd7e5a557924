"""Where a stage's work runs: this machine (`local`) or a Ray cluster (`ray`), behind one small interface the
stages call with plain functions and data. An executor never imports a stage; what both run (a teacher's
requests into the cache, the row filters over a row group) lives below them, in `generation` and `filters`.

- `generate_missing(cfg, plan, cache)`: every sample of the plan the cache lacks, bought and cached.
- `judge_row_groups(cfg, groups, index)`: the row filters' results for each (path, row group, task), in order.
- `shared_band_keys(cfg, signatures)`: near-dedup's band keys that two rows share (None: the stage finds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..config.stages import FilterConfig, GenerationSettings
from ..filters.decontam import DecontamIndex
from ..generation.budget import Budget
from ..generation.plan import Plan
from ..generation.stats import Bought, GenerationStats
from ..storage.cache import SampleCache


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
    if cfg.executor.kind == "ray":
        from .ray import generate_on_ray

        return generate_on_ray(cfg, work, cache, start)
    if cfg.teacher.batch:
        from .batch import generate_in_batches

        bought = generate_in_batches(cfg, work, cache, start, budget)
    else:
        from .local import generate_here

        bought = generate_here(cfg, work, cache, start, budget, adaptive)
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
    if cfg.executor.kind == "ray":
        from .ray import judge_on_ray

        return judge_on_ray(cfg, groups, index)
    from .local import judge_here

    return judge_here(cfg, groups, index, workers)


def shared_band_keys(cfg: FilterConfig, signatures: list[bytes]) -> set[tuple[int, int]] | None:
    """On a cluster with enough rows, a distributed shuffle finds the band keys two rows share; else None, and
    the dedup filter finds them itself."""
    if cfg.executor.kind != "ray" or not cfg.dedup.near or len(signatures) < cfg.executor.shuffle_from:
        return None
    from .ray import shared_band_keys as on_ray

    return on_ray(signatures)
