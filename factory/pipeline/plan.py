"""`factory run --dry-run`: the plan, and what each stage will cost (dollars for an API teacher, GPU-hours for
local generation, training and evals, tokens throughout) with the assumptions printed, and a total. Nothing runs,
nothing is downloaded."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..stages.base import trains
from ..stages.estimates import EstimateContext, Upstream, assumptions_line, cost_line, total
from .load import Pipeline, resolve_refs
from .registry import STAGES

console = Console(stderr=True)


def dry_run(p: Pipeline) -> dict[str, Any]:
    """Each instance's estimate in order: what a stage decides about the data (a generate's samples, a filter's
    selection) and the size of what a training stage trains reach the stages after it."""
    out: dict[str, Any] = {"stages": p.stages, "run_dir": str(p.run_dir), "costs": {}}
    table = Table(title=f"plan: {p.path} -> {p.run_dir}")
    for column in ("stage", "what", "cost"):
        table.add_column(column)
    ctx = EstimateContext(p.plan, Upstream())
    for inst in p.instances:
        stage = STAGES[inst.kind]
        ctx.raw = inst.config
        est = stage.estimate(resolve_refs(inst, p, prepare=False), ctx)
        if est.upstream is not None:
            ctx.upstream = est.upstream
        if trains(stage):
            ctx.trained[inst.name] = est.params_b
        figures = est.cost.figures()
        out[inst.name] = figures
        if figures:
            out["costs"][inst.name] = figures
        for i, line in enumerate(est.what.splitlines()):
            table.add_row(inst.name, line, cost_line(figures, p.plan) if i == 0 and figures else "")
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
