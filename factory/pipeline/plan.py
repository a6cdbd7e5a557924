"""`factory run --dry-run`: the plan, and for generation the expected tokens and, given prices, the cost.
Nothing runs, nothing is downloaded."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .estimates import generation_estimate
from .load import Pipeline, model_refs, resolve_refs
from .registry import STAGES, Context

console = Console(stderr=True)


def dry_run(p: Pipeline) -> dict[str, Any]:
    out: dict[str, Any] = {"stages": p.stages, "run_dir": str(p.run_dir)}
    table = Table(title=f"plan: {p.path} -> {p.run_dir}")
    table.add_column("stage")
    table.add_column("what")
    for inst in p.instances:
        if inst.kind == "generate":
            out[inst.name] = generation_estimate(inst.config, p.plan)[0]
        for line in STAGES[inst.kind].plan(resolve_refs(inst, p, prepare=False), Context(p, inst, model_ref=model_refs(p, inst.name, prepare=False))).splitlines():
            table.add_row(inst.name, line)
    console.print(table)
    out["plan"] = [list(row) for row in zip(*(column.cells for column in table.columns))]
    return out
