"""`factory run --dry-run`: the plan, and what each stage will cost (dollars for an API teacher, GPU-hours for
local generation, training and evals, tokens throughout) with the assumptions printed, and a total. Nothing runs,
nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .estimates import (
    PlanAssumptions,
    Upstream,
    assumptions_line,
    cost_line,
    distill_estimate,
    eval_estimate,
    generation_estimate,
    grpo_estimate,
    grpo_rollouts,
    params_of,
    total,
)
from .load import Pipeline, StageInstance, model_refs, resolve_refs
from .registry import STAGES, Context

console = Console(stderr=True)
STUDENT = "@student"  # in `trained`: the nearest distill stage's parameter count (what `student` names)


def dry_run(p: Pipeline) -> dict[str, Any]:
    out: dict[str, Any] = {"stages": p.stages, "run_dir": str(p.run_dir), "costs": {}}
    table = Table(title=f"plan: {p.path} -> {p.run_dir}")
    for column in ("stage", "what", "cost"):
        table.add_column(column)
    upstream = Upstream()
    trained: dict[str, float | None] = {}  # a training stage's parameter count, for the stages that take its model
    for inst in p.instances:
        config = resolve_refs(inst, p, prepare=False)
        est = stage_estimate(inst, config, p.plan, upstream, trained)
        if inst.kind == "generate":
            out[inst.name] = est
            upstream = Upstream(samples=est.get("samples"), prompts=est.get("prompts"),
                                max_tokens=config.sampling.max_tokens)
        elif inst.kind == "filter" and "selection" in config.active() and config.selection.enabled:
            upstream = upstream.model_copy(update={"max_per_prompt": config.selection.max_per_prompt})
        if est:
            out["costs"][inst.name] = est
        lines = STAGES[inst.kind].plan(config, Context(p, inst, model_ref=model_refs(p, inst.name, prepare=False)))
        for i, line in enumerate(lines.splitlines()):
            table.add_row(inst.name, line, cost_line(est, p.plan) if i == 0 and est else "")
    out["total"] = total(list(out["costs"].values()), p.plan)
    unpriced = [name for name, e in out["costs"].items() if "train_tokens" in e and "gpu_hours" not in e]
    if unpriced:  # a total that silently leaves stages out reads as the whole bill
        out["total"]["incomplete"] = unpriced
    table.add_row("total", assumptions_line(p.plan), cost_line(out["total"], p.plan) + (
        f"; incomplete: {', '.join(unpriced)} not priced (parameter count unknown)" if unpriced else ""),
        style="bold")
    console.print(table)
    out["plan"] = [list(row) for row in zip(*(column.cells for column in table.columns))]
    return out


def stage_estimate(inst: StageInstance, config: Any, plan: PlanAssumptions, upstream: Upstream,
                   trained: dict[str, float | None] | None = None) -> dict[str, Any]:
    """`trained`: the parameter count of each training stage so far; a stage whose model is `stage:NAME` (or
    `student`, the nearest distill's) takes the count of the stage that trained it (its path names no size)."""
    trained = {} if trained is None else trained
    if inst.kind in ("distill", "grpo"):
        from train.students import PRESETS, resolve_student

        field = "student" if inst.kind == "distill" else "model"
        raw, model = str(getattr(inst.config, field)), getattr(config, field)
        params = params_of(model, resolve_student(model).params_b)
        if params is None:  # a checkpoint a distill stage wrote: RUN/student/PRESET/final
            params = next((PRESETS[part].params_b for part in Path(model).parts if part in PRESETS), None)
        if params is None and raw.startswith("stage:"):
            params = trained.get(raw.removeprefix("stage:"))
        if params is None and raw == "student":
            params = trained.get(STUDENT)
        trained[inst.name] = params
        if inst.kind == "distill":
            trained[STUDENT] = params
    if inst.kind == "generate":
        return generation_estimate(config, plan)[0]
    if inst.kind == "distill":
        from train.students import resolve_settings

        s = resolve_settings(config)
        return distill_estimate(config, plan, upstream, s.epochs, params, s.max_length)
    if inst.kind == "grpo":
        _, _, rollouts = grpo_rollouts(config, plan)
        return grpo_estimate(rollouts, plan.mean_prompt_tokens, plan.completion_tokens(config.max_completion_length),
                             params, plan)
    if inst.kind == "eval":
        parts = [eval_estimate(e, plan) for _, e in config]
        return {k: sum(x.get(k) or 0 for x in parts) for k in ("samples", "completion_tokens", "cost_usd", "gpu_hours")
                if any(k in x for x in parts)}
    return {}
