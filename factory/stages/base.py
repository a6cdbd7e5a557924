"""What a stage module is. A stage is one module (under factory/stages/, or train/stages/ for the torch side) that
holds everything about it; the pipeline's stage table, its dry run, `factory config show` and the reference are
built from these modules, so adding a stage touches that module, its test and its docs page.

A stage module defines:
- `KIND`: its name in pipelines; `ORDER`: where a plain `stages: [..]` list puts it (lower first).
- `Config`: its pydantic config (every field with a default and a description).
- `Result`: a `StageResult`, what `run` returns; `summary()` is what pipeline_state.json keeps of it, and
  `Result.describe(summary)` its line in the pipeline's table.
- `resolve(cfg) -> cfg`: every default derived from other values, the run directory or the machine (`engine:
  auto`, the generation limit...). No side effects. `run` starts from it, so what is fingerprinted, written to
  config.resolved.yaml and run is one config; `factory config show` prints it.
- `run(cfg, ctx) -> Result`, with a `RunContext` (section, command line, resume).
- `up_to_date(cfg) -> bool`: its outputs exist (no side effects: nothing downloaded, converted or built).
- `estimate(cfg, plan) -> Estimate`: the dry run's line(s) and cost, from `EstimateContext`.
and, where they apply:
- `OUTPUT_FIELD`: the config field a pipeline's run directory goes into (default `run_dir`);
- `MODEL_FIELDS`: dotted fields that may name a model by reference (`stage:NAME`, `student`, ...);
- `trained_model(cfg) -> Path`: what `stage:NAME` means for an instance of it (training stages);
- `default_output(run_dir, name) -> Path`: a named instance's own output folder;
- `in_pipeline(cfg, ctx) -> Result`: how a pipeline runs it when that differs from `run` (a process of its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from ..core.context import RunContext
from ..core.results import StageResult
from .estimates import Estimate, EstimateContext


class Stage(Protocol):
    """The module interface above, for type checkers (a stage module satisfies it)."""

    KIND: str
    ORDER: int
    Config: type[BaseModel]
    Result: type[StageResult]

    def resolve(self, cfg: Any) -> Any: ...
    def run(self, cfg: Any, ctx: RunContext = ...) -> StageResult: ...
    def up_to_date(self, cfg: Any) -> bool: ...
    def estimate(self, cfg: Any, plan: EstimateContext) -> Estimate: ...


def output_field(stage: Any) -> str:
    return getattr(stage, "OUTPUT_FIELD", "run_dir")


def model_fields(stage: Any) -> tuple[str, ...]:
    return getattr(stage, "MODEL_FIELDS", ())


def trained_model(stage: Any, cfg: Any) -> Path | None:
    fn = getattr(stage, "trained_model", None)
    return fn(cfg) if fn else None


def trains(stage: Any) -> bool:
    return hasattr(stage, "trained_model")


def default_output(stage: Any, run_dir: Path, name: str) -> Path | None:
    fn = getattr(stage, "default_output", None)
    return fn(run_dir, name) if fn else None


def run_in_pipeline(stage: Any, cfg: Any, ctx: RunContext) -> StageResult:
    return getattr(stage, "in_pipeline", stage.run)(cfg, ctx)
