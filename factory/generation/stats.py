"""What buying samples did, typed: an executor's `Bought` (its counts and usage, plus the failures by cache key),
and `GenerateStats`, the generate stage's result and generate_stats.json. Two runs' stats add up (`+`, as
datatrove's Stats do): the shards of a sharded run, the teachers of one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.results import StageResult
from ..teachers import Completion

SUMMED = ("prompts", "samples", "cached", "requested", "http_requests", "retries", "prompt_tokens",
          "completion_tokens", "generation_seconds", "cost_usd", "batches", "rows", "ok", "failed", "truncated",
          "trace_completion_tokens")


class GenerationStats(StageResult):
    """Counts and usage of one plan's samples: how many the plan holds, how many the cache had, how many were
    requested, and (when any was) what the teacher reported. None: not measured (nothing was requested)."""

    teacher: str | None = None  # ENGINE:MODEL (a run of several teachers: each one's stats in by_teacher)
    prompts: int = 0
    samples: int = 0
    cached: int = 0
    requested: int = 0
    http_requests: int | None = None
    retries: int | None = None
    failures_by_class: dict[str, int] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    generation_seconds: float | None = None
    completion_tokens_per_s: float | None = None
    first_token_s: float | None = None  # a local engine's: how long nothing moved
    first_sample_s: float | None = None
    cost_usd: float | None = None
    batches: int | None = None  # a batch API's batches
    adaptive: dict[str, Any] | None = None  # adaptive sampling's rounds (executors.adaptive.Rounds.stats)
    stopped_by: str | None = None  # the budget that ended the run

    def with_usage(self, cfg: Any, usage: Any, seconds: float) -> GenerationStats:
        from .plan import usage_report

        return self.model_copy(update=usage_report(cfg, usage, seconds))

    def __add__(self, other: GenerationStats) -> GenerationStats:
        """Disjoint work summed (shards, teachers); the rate recomputed from the sums."""
        merged = {k: _add(getattr(self, k, None), getattr(other, k, None)) for k in SUMMED
                  if k in type(self).model_fields}
        failures = {**(self.failures_by_class or {})}
        for k, v in (other.failures_by_class or {}).items():
            failures[k] = failures.get(k, 0) + v
        out = self.model_copy(update={**merged, "failures_by_class": failures or None})
        seconds = out.generation_seconds or 0
        if out.completion_tokens is not None:
            out.completion_tokens_per_s = round(out.completion_tokens / seconds, 1) if seconds else 0.0
        return out


def _add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return b if a is None else a
    return round(a + b, 6) if isinstance(a, float) or isinstance(b, float) else a + b


@dataclass
class Bought:
    """What an executor returns: the stats, and the samples that failed (by cache key; not cached, so a rerun
    tries them again)."""

    stats: GenerationStats
    errors: dict[str, Completion] = field(default_factory=dict)


class GenerateStats(GenerationStats):
    """The generate stage's result (generate_stats.json): the plan's stats plus the traces written from them."""

    SUMMARY = ("samples", "cached", "requested", "ok", "failed", "completion_tokens")

    by_teacher: list[GenerationStats] | None = None
    rows: int = 0
    ok: int = 0
    failed: int = 0
    failed_by_class: dict[str, int] = {}
    truncated: int = 0
    trace_completion_tokens: int = 0  # the traces' own (completion_tokens: what was bought now)
    seconds: float = 0.0
    fingerprint: str | None = None
    shards: int | None = None  # a merged run: how many shards
    merged_from: list[str] | None = None

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        return (f"{s.get('samples')} samples ({s.get('cached')} cached, {s.get('failed')} failed), "
                f"{s.get('completion_tokens') or 0} new tokens")
