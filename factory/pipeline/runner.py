"""`factory run PIPELINE.yaml`: the stage instances in order, each fingerprinted by its resolved config and the
fingerprints of the instances before it. A rerun skips finished instances whose fingerprint is unchanged, resumes
an interrupted one (generation from its cache, training from its last complete checkpoint), and reruns what a
change invalidates.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config.loader import fingerprint
from ..core.context import RunContext
from ..core.errors import FactoryError
from ..core.jsonfiles import read_json_object, write_json_atomic
from ..stages.base import run_in_pipeline
from ..storage.rundir import RunDir
from .load import Pipeline, resolve_refs
from .registry import STAGES

console = Console(stderr=True)


def fingerprints(p: Pipeline) -> dict[str, str]:
    out, upstream = {}, ""
    for inst in p.instances:
        label = inst.name if inst.name == inst.kind else f"{inst.name}({inst.kind})"
        upstream = hashlib.sha256(f"{upstream}|{label}:{fingerprint(inst.config)}".encode()).hexdigest()[:16]
        out[inst.name] = upstream
    return out


def plan_stages(p: Pipeline, state: dict[str, Any], start: str | None, only: str | None) -> dict[str, str]:
    """instance -> 'skip' | 'run' | 'resume'. Reads files, changes nothing. `start` and `only` name an instance
    or a block (every instance of an eval block)."""
    fps = fingerprints(p)
    first = p.named(start)[0].name if start else None
    chosen = {i.name for i in p.named(only)} if only else None
    decided: dict[str, str] = {}
    forced = False
    for inst in p.instances:
        forced = forced or inst.name == first
        if chosen is not None and inst.name not in chosen:
            continue
        prev = state.get(inst.name, {})
        same = prev.get("fingerprint") == fps[inst.name]
        if not forced and same and prev.get("done") and STAGES[inst.kind].up_to_date(
                resolve_refs(inst, p, prepare=False)):
            decided[inst.name] = "skip"
        else:
            decided[inst.name] = "resume" if same and not prev.get("done") else "run"
    return decided


def check_flags(p: Pipeline, start: str | None, only: str | None) -> None:
    for flag_name, flag in (("--from", start), ("--only", only)):
        if flag and not p.named(flag):
            names = list(dict.fromkeys([*p.blocks, *p.stages]))
            raise FactoryError(f"{flag_name} {flag}: not a stage of {p.path} ({', '.join(names)})")
    if start and only and start != only:
        raise FactoryError(f"--only {only} --from {start}: --only runs one stage, --from reruns every stage from "
                           f"one on; give one of them (--only {only} --from {only} reruns {only} alone)")


def run(p: Pipeline, start: str | None = None, only: str | None = None, command: str | None = None
        ) -> dict[str, Any]:
    """Runs what is not up to date; `command`: the command line, for each stage's lineage."""
    check_flags(p, start, only)
    p.run_dir.mkdir(parents=True, exist_ok=True)
    state_path = RunDir(p.run_dir).state
    state = read_json_object(state_path, "pipeline state", {}) if state_path.exists() else {}
    fps = fingerprints(p)
    results: dict[str, Any] = {}
    for name, action in plan_stages(p, state, start, only).items():
        if action == "skip":
            console.print(f"[bold]{name}[/]: up to date (fingerprint {fps[name]}), skipped")
            results[name] = {**state[name], "action": "skipped"}
            continue
        console.rule(f"[bold]{name}[/] ({action})")
        started_at = datetime.now(timezone.utc).isoformat()  # bench/quickstart.py: when its first trace landed
        state[name] = {"fingerprint": fps[name], "done": False, "started_at": started_at}
        write_json_atomic(state_path, state)
        began = time.perf_counter()
        inst = p.instance(name)
        ctx = RunContext(section=name if name != inst.kind else None, command=command, resume=action == "resume")
        summary = run_in_pipeline(STAGES[inst.kind], resolve_refs(inst, p), ctx).summary()
        state[name] = {"fingerprint": fps[name], "done": True, "started_at": started_at,
                       "seconds": round(time.perf_counter() - began, 1), "summary": summary}
        write_json_atomic(state_path, state)
        results[name] = {**state[name], "action": action}
    print_summary(p, results)
    return results


def print_summary(p: Pipeline, results: dict[str, Any]) -> None:
    table = Table(title=f"factory run {p.name}: {p.run_dir}")
    for col in ("stage", "action", "seconds", "result"):
        table.add_column(col)
    for inst in p.instances:
        if inst.name in results:
            r = results[inst.name]
            table.add_row(inst.name, r["action"], str(r.get("seconds", "")),
                          STAGES[inst.kind].Result.describe(r.get("summary") or {}))
    console.print(table)
