"""The filter stage's config: its own settings, then one sub-section per registered filter, in R1's order, built
from the registry (`FILTERS`): a new filter is its module's function, settings model and spec, and one entry in
the registry's list, not a field here."""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model, field_validator

from ..config.stages import ExecutorConfig
from ..config.strict import Strict
from . import DEFAULT_ORDER, FILTERS


class FilterSettings(Strict):
    """What the filter stage itself is set with: where the traces are, which filters in which order, how it runs."""

    run_dir: str = Field("runs/default", description="Run directory holding traces/")
    order: list[str] = Field(default_factory=lambda: list(DEFAULT_ORDER),
                             description="Filters to apply, in order; reject_reason is the first that fails")
    workers: int = Field(0, ge=0, description="Worker processes for row filters (0: one per core)")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where the row filters run")
    batch_rows: int = Field(1024, ge=1, description="Rows per batch when writing (memory stays flat in the run size)")
    task_timeout_s: float = Field(1800.0, gt=0, description="Longest a worker may spend on one row group "
                                  "before it is replaced and the group's rows are rejected")
    shard_rows: int = Field(10_000, ge=1, description="Rows per output Parquet shard")
    progress: bool = Field(True, description="Show a progress bar")
    all_verdicts: bool = Field(False, description="Judge every row with every filter (ablations); by default the "
                               "expensive filters that nothing else needs (language, repetition) skip rows an "
                               "earlier filter already rejected, which never changes what is kept or why")

    @field_validator("order")
    @classmethod
    def _known_filters(cls, order: list[str]) -> list[str]:
        for name in order:
            if name not in FILTERS:
                raise ValueError(f"unknown filter {name!r} (known: {', '.join(FILTERS)})")
        if len(set(order)) != len(order):
            raise ValueError("a filter is listed twice")
        return order

    def active(self) -> list[str]:
        return [name for name in self.order if getattr(self, name).enabled]


def _sections() -> dict[str, Any]:
    return {name: (spec.params, Field(default_factory=spec.params, description=f"The {name} filter's settings"))
            for name, spec in FILTERS.items()}


class FilterConfig(create_model("FilterSections", __base__=FilterSettings, __module__=__name__,  # type: ignore[call-overload]
                                **_sections())):
    """`factory filter`'s config and a pipeline's `filter` stage: FilterSettings, then each filter's settings."""
