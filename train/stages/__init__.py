"""The training stages as stage modules (see factory/stages/base.py): distill (SFT) and grpo. These modules are
light (no torch at import: the pipeline plans with them); the trainers they run are train/sft.py and
train/grpo.py, imported when a stage runs."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from factory.core.context import RunContext
from factory.core.results import StageResult
from factory.stages.estimates import STUDENT, EstimateContext, params_of

R = TypeVar("R", bound=StageResult)


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


def train(kind: str, result: type[R], cfg: Any, ctx: RunContext, here: Callable[[Any, RunContext], dict],
          out_dir: Path) -> R:
    """A training stage's run: in this process (`here`: the trainer; every process of a distributed launch runs
    it), or with `launch`, in the processes of that launch config while this one waits for their summary (in
    `out_dir`, the stage's output directory)."""
    if cfg.launch:
        from ..launch import train_in_processes

        out = result.read(train_in_processes(cfg, kind, out_dir, ctx), f"{kind} summary")
    else:
        out = result.model_validate(json.loads(json.dumps(here(cfg, ctx), default=str)))  # as the file reads
    print(f"{kind}: {result.describe(out.summary())}, model in {getattr(out, 'output', '?')}", file=sys.stderr)
    return out


def train_in_pipeline(kind: str, result: type[R], cfg: Any, ctx: RunContext, out_dir: Path) -> R:
    """A pipeline's training stage: in processes of its own (`launch` decides how many; the pipeline keeps its
    state). A changed config invalidates the old checkpoints: only a resumed stage keeps them."""
    from ..launch import train_in_processes

    if not ctx.resume and out_dir.exists():
        shutil.rmtree(out_dir)
    summary = train_in_processes(cfg.model_copy(update={"resume": ctx.resume}), kind, out_dir, ctx)
    return result.read(summary, f"{kind} summary")
