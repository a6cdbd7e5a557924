"""`factory run --dry-run`: the plan, and what each stage will cost (dollars for an API teacher, GPU-hours for
local generation, training and evals, tokens throughout) with the assumptions printed, and a total. Nothing runs,
nothing is downloaded."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .estimates import (
    PlanAssumptions,
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


def dry_run(p: Pipeline) -> dict[str, Any]:
    out: dict[str, Any] = {"stages": p.stages, "run_dir": str(p.run_dir), "costs": {}}
    table = Table(title=f"plan: {p.path} -> {p.run_dir}")
    for column in ("stage", "what", "cost"):
        table.add_column(column)
    generated: int | None = None
    for inst in p.instances:
        config = resolve_refs(inst, p, prepare=False)
        est = stage_estimate(inst, config, p.plan, generated)
        if inst.kind == "generate":
            out[inst.name], generated = est, est.get("samples")
        if est:
            out["costs"][inst.name] = est
        lines = STAGES[inst.kind].plan(config, Context(p, inst, model_ref=model_refs(p, inst.name, prepare=False)))
        for i, line in enumerate(lines.splitlines()):
            table.add_row(inst.name, line, cost_line(est, p.plan) if i == 0 and est else "")
    out["total"] = total(list(out["costs"].values()), p.plan)
    table.add_row("total", assumptions_line(p.plan), cost_line(out["total"], p.plan), style="bold")
    console.print(table)
    out["plan"] = [list(row) for row in zip(*(column.cells for column in table.columns))]
    return out


def stage_estimate(inst: StageInstance, config: Any, plan: PlanAssumptions, generated: int | None) -> dict[str, Any]:
    if inst.kind == "generate":
        return generation_estimate(config, plan)[0]
    if inst.kind == "distill":
        from train.students import resolve_settings, resolve_student

        s = resolve_settings(config)
        params = params_of(config.student, resolve_student(config.student).params_b)
        return distill_estimate(config, plan, generated, s.epochs, params, s.max_length)
    if inst.kind == "grpo":
        from train.students import resolve_student

        _, _, rollouts = grpo_rollouts(config, plan)
        params = params_of(config.model, resolve_student(config.model).params_b)
        return grpo_estimate(rollouts, plan.mean_prompt_tokens, plan.completion_tokens(config.max_completion_length),
                             params, plan)
    if inst.kind == "eval":
        parts = [eval_estimate(e, plan) for _, e in config]
        return {k: sum(x.get(k) or 0 for x in parts) for k in ("samples", "completion_tokens", "cost_usd", "gpu_hours")
                if any(k in x for x in parts)}
    return {}
