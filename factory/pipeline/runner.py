"""`factory run PIPELINE.yaml`: the stage instances in order, each fingerprinted by its resolved config and the
fingerprints of the instances before it. A rerun skips finished instances whose fingerprint is unchanged, resumes
an interrupted one (generation from its cache, training from its last complete checkpoint), and reruns what a
change invalidates.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config.loader import fingerprint, public_dump
from ..core.errors import FactoryError
from ..core.section import stage_section
from ..storage.rundir import RunDir
from ..storage.shards import read_json_object, write_json_atomic
from .load import Pipeline, StageInstance, model_refs, resolve_refs
from .registry import STAGES, Context

console = Console(stderr=True)


def _own_fingerprint(inst: StageInstance) -> str:
    if inst.kind == "eval":
        return fingerprint({n: public_dump(c) for n, c in inst.config})
    return fingerprint(inst.config)


def fingerprints(p: Pipeline) -> dict[str, str]:
    out, upstream = {}, ""
    for inst in p.instances:
        label = inst.name if inst.name == inst.kind else f"{inst.name}({inst.kind})"
        upstream = hashlib.sha256(f"{upstream}|{label}:{_own_fingerprint(inst)}".encode()).hexdigest()[:16]
        out[inst.name] = upstream
    return out


def plan_stages(p: Pipeline, state: dict[str, Any], start: str | None, only: str | None) -> dict[str, str]:
    """instance -> 'skip' | 'run' | 'resume'. Reads files, changes nothing."""
    fps = fingerprints(p)
    decided: dict[str, str] = {}
    forced = False
    for inst in p.instances:
        forced = forced or inst.name == start
        if only and inst.name != only:
            continue
        prev = state.get(inst.name, {})
        same = prev.get("fingerprint") == fps[inst.name]
        if not forced and same and prev.get("done") and STAGES[inst.kind].outputs_exist(
                resolve_refs(inst, p, prepare=False)):
            decided[inst.name] = "skip"
        else:
            decided[inst.name] = "resume" if same and not prev.get("done") else "run"
    return decided


def check_flags(p: Pipeline, start: str | None, only: str | None) -> None:
    for flag_name, flag in (("--from", start), ("--only", only)):
        if flag and flag not in p.stages:
            raise FactoryError(f"{flag_name} {flag}: not a stage of {p.path} ({', '.join(p.stages)})")
    if start and only and start != only:
        raise FactoryError(f"--only {only} --from {start}: --only runs one stage, --from reruns every stage from "
                           f"one on; give one of them (--only {only} --from {only} reruns {only} alone)")


def run(p: Pipeline, start: str | None = None, only: str | None = None) -> dict[str, Any]:
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
        with stage_section(name if name != inst.kind else None):
            summary = STAGES[inst.kind].run(resolve_refs(inst, p), Context(p, inst, resume=action == "resume",
                                                                           model_ref=model_refs(p, inst.name)))
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
                          STAGES[inst.kind].describe(r.get("summary") or {}))
    console.print(table)
    for inst in p.instances:
        if inst.kind == "eval" and inst.name in results:
            done = results[inst.name].get("summary") or {}
            evals = {n: done[n] for n, _ in inst.config if n in done}  # the pipeline's order: the first is the reference
            names = list(evals)
            pairs = [(names.index(e.vs), names.index(n)) for n, e in inst.config if e.vs in evals and n in evals]
            if evals:
                _print_evals(evals, pairs)


def _print_evals(evals: dict[str, Any], pairs: list[tuple[int, int]]) -> None:
    ks = sorted({k for v in evals.values() for k in v if k.startswith(("pass@", "maj@"))},
                key=lambda k: (k.split("@")[0], int(k.split("@")[1])))
    table = Table(title="eval (95% CI)")
    for col in ("eval", "model", "benchmark", *ks):
        table.add_column(col)
    for name, v in evals.items():
        cells = [f"{v[k]['mean']:.3f}" + (f" ± {v[k]['ci95']:.3f}" if v[k].get("ci95") is not None else "")
                 if k in v else "-" for k in ks]
        table.add_row(name, Path(v["model"]).name, v["benchmark"], *cells)
    console.print(table)
    files = [v["file"] for v in evals.values()]
    if len(files) >= 2:
        from ..stages.compare import compare

        compare(files, str(Path(files[0]).parent / "compare.png"), md=str(Path(files[0]).parent / "summary.md"),
                pairs=pairs)
