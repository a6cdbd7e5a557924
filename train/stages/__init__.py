"""The training stages as stage modules (see factory/stages/base.py): distill (SFT) and grpo. These modules are
light (no torch at import: the pipeline plans with them); the trainers they run are train/sft.py and
train/grpo.py, imported when a stage runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.stages.estimates import STUDENT, EstimateContext, params_of


def trained_params(field: str, model: str, ctx: EstimateContext) -> float | None:
    """The parameter count of the model a training stage starts from: a preset's, one its name says ("-7B"), a
    checkpoint a distill stage wrote (RUN/student/PRESET/final), or the count of the stage that trained it
    (`stage:NAME`, or `student`: the nearest distill's)."""
    from ..students import PRESETS, resolve_student

    raw = str(getattr(ctx.raw, field)) if ctx.raw is not None else model
    params = params_of(model, resolve_student(model).params_b)
    if params is None:
        params = next((PRESETS[part].params_b for part in Path(model).parts if part in PRESETS), None)
    if params is None and raw.startswith("stage:"):
        params = ctx.trained.get(raw.removeprefix("stage:"))
    if params is None and raw == "student":
        params = ctx.trained.get(STUDENT)
    return params


def summary_of(result: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: getattr(result, k) for k in keys}
