"""`factory run PIPELINE.yaml`: the stages in order, each fingerprinted by its resolved config and the fingerprints of
the stages before it. A rerun skips finished stages whose fingerprint is unchanged, resumes an interrupted one
(generation from its cache, training from its last complete checkpoint), and reruns what a change invalidates.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config import fingerprint, public_dump
from ..errors import FactoryError
from ..pipeline import STAGES, Pipeline, resolve_model_ref
from ..shards import write_json_atomic

console = Console(stderr=True)
STATE = "pipeline_state.json"


def _fingerprints(p: Pipeline) -> dict[str, str]:
    out, upstream = {}, ""
    for stage in p.stages:
        own = (fingerprint(p.configs[stage]) if stage != "eval"
               else fingerprint({n: public_dump(c) for n, c in p.evals}))
        upstream = hashlib.sha256(f"{upstream}|{stage}:{own}".encode()).hexdigest()[:16]
        out[stage] = upstream
    return out


def _outputs_exist(stage: str, p: Pipeline) -> bool:
    d = p.run_dir
    if stage == "generate":
        return (d / "traces" / "manifest.json").exists()
    if stage == "filter":
        return (d / "filtered" / "stats.json").exists()
    if stage == "card":
        return (Path(p.configs["card"].out or d / "card") / "README.md").exists()
    if stage == "distill":
        return (Path(resolve_model_ref("student", p)) / "config.json").exists()
    from .eval import result_path

    return all(result_path(_eval_cfg(c, p)).exists() for _, c in p.evals)


def _eval_cfg(cfg, p: Pipeline):
    return cfg.model_copy(update={"model": resolve_model_ref(cfg.model, p)})


def plan_stages(p: Pipeline, state: dict[str, Any], start: str | None, only: str | None) -> dict[str, str]:
    """stage -> 'skip' | 'run' | 'resume'."""
    fps = _fingerprints(p)
    decided: dict[str, str] = {}
    forced = False
    for stage in p.stages:
        forced = forced or stage == start
        if only and stage != only:
            continue
        prev = state.get(stage, {})
        same = prev.get("fingerprint") == fps[stage]
        if not forced and same and prev.get("done") and _outputs_exist(stage, p):
            decided[stage] = "skip"
        else:
            decided[stage] = "resume" if same and not prev.get("done") else "run"
    return decided


def run(p: Pipeline, start: str | None = None, only: str | None = None) -> dict[str, Any]:
    for name, flag in (("--from", start), ("--only", only)):
        if flag and flag not in p.stages:
            raise FactoryError(f"{name} {flag}: not a stage of {p.path} ({', '.join(p.stages)})")
    p.run_dir.mkdir(parents=True, exist_ok=True)
    state_path = p.run_dir / STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    fps = _fingerprints(p)
    decided = plan_stages(p, state, start, only)
    results: dict[str, Any] = {}
    for stage, action in decided.items():
        if action == "skip":
            console.print(f"[bold]{stage}[/]: up to date (fingerprint {fps[stage]}), skipped")
            results[stage] = {**state[stage], "action": "skipped"}
            continue
        console.rule(f"[bold]{stage}[/] ({action})")
        state[stage] = {"fingerprint": fps[stage], "done": False}
        write_json_atomic(state_path, state)
        began = time.perf_counter()
        summary = _run_stage(stage, p, resume=action == "resume")
        state[stage] = {"fingerprint": fps[stage], "done": True, "seconds": round(time.perf_counter() - began, 1),
                        "summary": summary}
        write_json_atomic(state_path, state)
        results[stage] = {**state[stage], "action": action}
    print_summary(p, results)
    return results


def _run_stage(stage: str, p: Pipeline, resume: bool) -> dict[str, Any]:
    if stage == "generate":
        from . import generate

        r = generate.run(p.configs["generate"])
        return {k: r.get(k) for k in ("samples", "cached", "requested", "ok", "failed", "completion_tokens")}
    if stage == "filter":
        from . import filter as filter_stage

        r = filter_stage.run(p.configs["filter"])
        return {"in": r["funnel"]["in"], "kept": r["funnel"]["kept"]}
    if stage == "card":
        from . import card

        return {"card": str(card.run(p.configs["card"]))}
    if stage == "distill":
        return _distill(p, resume)
    return _evals(p)


def _distill(p: Pipeline, resume: bool) -> dict[str, Any]:
    from train import sft

    cfg = p.configs["distill"]
    out = sft.output_dir(cfg)
    if not resume and out.exists():
        shutil.rmtree(out)  # a changed config invalidates the old checkpoints: never resume across configs
    r = sft.run(cfg.model_copy(update={"resume": resume}))
    return {k: r.get(k) for k in ("steps", "final_loss", "output", "nonpad_share")} | {"samples": r["data"]["samples"]}


def _evals(p: Pipeline) -> dict[str, Any]:
    from . import eval as eval_stage

    out = {}
    for name, cfg in p.evals:
        r = eval_stage.run(_eval_cfg(cfg, p))
        m = r["metrics"]
        out[name] = {"file": str(eval_stage.result_path(_eval_cfg(cfg, p))), "model": r["model"],
                     "benchmark": r["benchmark"], **{k: v for k, v in m.items() if isinstance(v, dict)}}
    return out


def print_summary(p: Pipeline, results: dict[str, Any]) -> None:
    table = Table(title=f"factory run {p.name}: {p.run_dir}")
    for col in ("stage", "action", "seconds", "result"):
        table.add_column(col)
    for stage in STAGES:
        if stage in results:
            r = results[stage]
            table.add_row(stage, r["action"], str(r.get("seconds", "")), _describe(stage, r.get("summary") or {}))
    console.print(table)
    done = (results.get("eval") or {}).get("summary") or {}
    evals = {n: done[n] for n, _ in p.evals if n in done}  # the pipeline's order: the first is the reference
    if evals:
        _print_evals(evals)


def _describe(stage: str, s: dict[str, Any]) -> str:
    if stage == "generate":
        return (f"{s.get('samples')} samples ({s.get('cached')} cached, {s.get('failed')} failed), "
                f"{s.get('completion_tokens') or 0} new tokens")
    if stage == "filter":
        return f"kept {s.get('kept')} of {s.get('in')}"
    if stage == "card":
        return s.get("card", "")
    if stage == "distill":
        return f"{s.get('samples')} samples, {s.get('steps')} steps, final loss {s.get('final_loss')}"
    return ", ".join(f"{n}: {v['pass@1']['mean']:.3f}" for n, v in s.items() if "pass@1" in v)


def _print_evals(evals: dict[str, Any]) -> None:
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
        from .compare import compare

        compare(files, str(Path(files[0]).parent / "compare.png"), md=str(Path(files[0]).parent / "summary.md"))


def _prompt_count(cfg) -> int | None:
    src = cfg.prompts.source
    if src.startswith("gym:"):
        n = cfg.prompts.size
    elif src == "humaneval":
        n = 164
    elif Path(src).exists():
        n = sum(1 for line in open(src) if line.strip()) if Path(src).suffix != ".parquet" else None
    else:
        n = None  # a Hub dataset: its size is not known without downloading it
    return min(n, cfg.prompts.limit) if n is not None and cfg.prompts.limit else (n or cfg.prompts.limit)


def _distill_plan(d) -> str:
    from train.students import resolve_student  # light: no torch at import

    preset = resolve_student(d.student)
    positions = d.max_position_embeddings or preset.max_position_embeddings
    theta = d.rope_theta or preset.rope_theta
    what = (f"{d.student}, epochs {d.epochs or preset.epochs}, lr {d.lr or preset.lr}, max_length "
            f"{d.max_length or preset.max_length}" + (", LoRA" if d.lora else ""))
    if positions:
        what += f"; context extended to {positions:,} positions" + (f", rope_theta {theta:,.0f}" if theta else "")
    mix = d.mix or []
    if mix:
        what += "; mixture: " + ", ".join(
            f"{m.source} ({'reasoning' if m.reasoning else 'non-reasoning'}"
            + (f", {m.count:,}" if m.count else f", ×{m.weight}" if m.weight else "") + ")" for m in mix)
    return what


def dry_run(p: Pipeline) -> dict[str, Any]:
    """The plan, and for generation the expected tokens and, given prices, cost. Nothing runs."""
    out: dict[str, Any] = {"stages": p.stages, "run_dir": str(p.run_dir)}
    table = Table(title=f"plan: {p.path} -> {p.run_dir}")
    table.add_column("stage")
    table.add_column("what")
    if "generate" in p.configs:
        g = p.configs["generate"]
        prompts = _prompt_count(g)
        per_sample = int(p.plan.get("mean_completion_tokens", g.sampling.max_tokens // 2))
        prompt_tokens = int(p.plan.get("mean_prompt_tokens", 200))
        est: dict[str, Any] = {"prompts": prompts, "samples": prompts * g.sampling.n if prompts else None}
        if prompts:
            est["completion_tokens"] = est["samples"] * per_sample
            est["prompt_tokens"] = est["samples"] * prompt_tokens
            if g.teacher.prices:
                est["cost_usd"] = round((est["prompt_tokens"] * g.teacher.prices.input_per_mtok
                                         + est["completion_tokens"] * g.teacher.prices.output_per_mtok) / 1e6, 2)
        out["generate"] = est
        what = (f"{g.teacher.engine}:{g.teacher.model} on {g.prompts.source}: {prompts or '?'} prompts × "
                f"{g.sampling.n} = {est['samples'] or '?'} samples, ~{per_sample} completion tokens each")
        if "completion_tokens" in est:
            tokens = est["completion_tokens"]
            what += f" (~{tokens / 1e6:.1f}M tokens" if tokens >= 1e6 else f" (~{tokens / 1e3:.0f}k tokens"
            what += f", ~${est['cost_usd']:,.2f})" if "cost_usd" in est else ")"
        table.add_row("generate", what)
    if "filter" in p.configs:
        f = p.configs["filter"]
        what = ", ".join(f.active())
        if "decontam" in f.active():
            what += f"; decontaminated against {', '.join(f.decontam.benchmarks) or 'nothing (no benchmarks)'}"
        what += f"; length limit {f.length.max_tokens or 'the generation limit'}"
        table.add_row("filter", what)
    if "card" in p.configs:
        table.add_row("card", str(Path(p.configs["card"].out or p.run_dir / "card") / "README.md"))
    if "distill" in p.configs:
        d = p.configs["distill"]
        table.add_row("distill", _distill_plan(d))
    for name, e in p.evals:
        s = e.sampling
        table.add_row("eval", f"{name}: {e.model} on {e.benchmark}, n={s.n} (pass@1 over {s.n}; "
                      f"{', '.join(f'pass@{k}, maj@{k}' for k in e.ks if 1 < k <= s.n) or 'no pass@k'}), "
                      f"T={s.temperature}, top_p={s.top_p}, max_tokens={s.max_tokens}")
    console.print(table)
    out["plan"] = [list(row) for row in zip(*(column.cells for column in table.columns))]
    return out
