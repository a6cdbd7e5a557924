"""`factory ablate ABLATION.yaml`: the base pipeline and each variant (once per seed) run as pipelines of their
own under runs/ablate/NAME/, sharing one sample cache, then one report: each variant's held-out pass@1 against
the base's, paired over the same problems, pooled over seeds, with Holm's adjustment for the number of variants.

A rerun skips what is up to date in every run (each is a `factory run`), so an interrupted ablation resumes.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from ..core.eval_metrics import holm, mean_ci, pooled_difference
from ..core.jsonfiles import read_json, read_json_object, write_json_atomic
from .ablation import Ablation
from .load import Pipeline

console = Console(stderr=True)
ALPHA = 0.05


def run(a: Ablation) -> dict[str, Any]:
    from .runner import run as run_pipeline

    for (variant, seed), p in a.runs.items():
        console.rule(f"[bold]{a.config.name}: {variant}" + (f", seed {seed}" if seed is not None else ""))
        run_pipeline(p)
    return report(a)


def scores(p: Pipeline, decide_by: str) -> dict[str, float]:
    """The decisive eval's pass@1 per problem (prompt id)."""
    from ..stages.eval import result_path

    path = result_path(dict(p.evals)[decide_by])
    result = read_json_object(path, "eval result", {"problems": list})
    return {q["prompt_id"]: q["metrics"]["pass@1"] for q in result["problems"]}


def _data(p: Pipeline) -> dict[str, Any]:
    """What a run trained on and spent, from its pipeline state (what each stage reported)."""
    state_path = p.run_dir / "pipeline_state.json"
    state = read_json(state_path, "pipeline state") if state_path.exists() else {}
    out: dict[str, Any] = {"seconds": round(sum((s or {}).get("seconds") or 0 for s in state.values()), 1)}
    for inst in p.instances:
        summary = (state.get(inst.name) or {}).get("summary") or {}
        if inst.kind == "generate":
            out["samples"] = summary.get("samples")
            out["completion_tokens"] = summary.get("completion_tokens")  # bought by this run (the rest: cached)
            out["cost_usd"] = summary.get("cost_usd")
            out["teacher"] = ", ".join(f"{t.engine}:{t.model}" for t in inst.config.all_teachers())
        elif inst.kind == "filter":
            out["kept"] = summary.get("kept")
        elif inst.kind == "distill":
            out["trained_samples"] = summary.get("samples")
    return out


def compare(a: Ablation) -> dict[str, Any]:
    """Every variant against the base: pooled paired difference, Holm-adjusted p, a sentence; ranked."""
    seeds = a.config.seeds or [None]
    base = [scores(a.runs["base", s], a.config.decide_by) for s in seeds]
    rows = []
    for v in a.config.variants:
        runs = [scores(a.runs[v.name, s], a.config.decide_by) for s in seeds]
        d = pooled_difference(list(zip(base, runs)))
        mean, ci = _pooled_mean(runs)
        rows.append({"name": v.name, "set": v.set, "pass@1": mean, "ci95": ci, **d,
                     **_data(a.runs[v.name, seeds[0]])})
    for row, p in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = p
        row["significant"] = p is not None and p < ALPHA and bool(row["significant"])
        row["sentence"] = sentence(row)
    mean, ci = _pooled_mean(base)
    rows.sort(key=lambda r: -(r["delta"] if r["delta"] == r["delta"] else -1e9))
    return {"name": a.config.name, "decide_by": a.config.decide_by, "seeds": a.config.seeds,
            "base": {"pass@1": mean, "ci95": ci, **_data(a.runs["base", seeds[0]])}, "variants": rows}


def _pooled_mean(runs: list[dict[str, float]]) -> tuple[float, float | None]:
    """pass@1 over problems, each problem's value averaged over the seeds."""
    problems = sorted(set().union(*runs))
    return mean_ci([sum(r[q] for r in runs if q in r) / sum(q in r for r in runs) for q in problems])


def sentence(r: dict[str, Any]) -> str:
    ci = f"95% CI [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if r["ci_low"] is not None else "no CI"
    p = f"Holm p = {r['p_holm']:.2g}" if r["p_holm"] is not None else "no test"
    if r["significant"]:
        way = "better" if r["delta"] > 0 else "worse"
        return f"{r['name']}: {way} than the base by {r['delta']:+.3f} ({ci}, {p})."
    return f"{r['name']}: no significant difference from the base ({r['delta']:+.3f}, {ci}, {p})."


def report(a: Ablation) -> dict[str, Any]:
    """runs/ablate/NAME/results.json, report.md and ablation.png."""
    from ..publish import plots

    results = compare(a)
    write_json_atomic(a.root / "results.json", results)
    (a.root / "report.md").write_text(markdown(results))
    plots.ablation([(r["name"], r["delta"], r["ci_low"], r["ci_high"], r["significant"])
                    for r in results["variants"]],
                   a.root / "ablation.png", f"{a.config.decide_by} pass@1, variant − base")
    console.print("\n".join(r["sentence"] for r in results["variants"]))
    console.print(f"report: {a.root / 'report.md'}")
    return results


def markdown(res: dict[str, Any]) -> str:
    seeds = f", pooled over seeds {', '.join(map(str, res['seeds']))}" if res["seeds"] else ""
    b = res["base"]
    lines = [f"# Ablation `{res['name']}`", "",
             f"Decided by `{res['decide_by']}` pass@1, each variant paired with the base over the same problems"
             f"{seeds}; p-values adjusted for {len(res['variants'])} variants (Holm).", "",
             "| variant | pass@1 | vs base (95% CI) | Holm p | kept traces | trained samples | tokens bought | "
             "run minutes |", "|---|---|---|---|---|---|---|---|",
             f"| base | {_pm(b['pass@1'], b['ci95'])} | reference | | {_n(b, 'kept')} | "
             f"{_n(b, 'trained_samples')} | {_n(b, 'completion_tokens')} | {_minutes(b)} |"]
    for r in res["variants"]:
        ci = f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if r["ci_low"] is not None else "-"
        p = f"{r['p_holm']:.2g}" if r["p_holm"] is not None else "-"
        lines.append(f"| {r['name']} | {_pm(r['pass@1'], r['ci95'])} | **{r['delta']:+.3f}** {ci} | {p} | "
                     f"{_n(r, 'kept')} | {_n(r, 'trained_samples')} | {_n(r, 'completion_tokens')} | "
                     f"{_minutes(r)} |")
    teachers = sorted({r.get("teacher") for r in [b, *res["variants"]] if r.get("teacher")})
    lines += ["", f"Teacher: {'; '.join(teachers) or '-'}. Tokens bought: what each run asked its teacher for "
              "(the base buys the samples; a variant whose samples the shared cache holds buys none). Run minutes: "
              "what its stages took when they ran.",
              "", *(f"- {r['sentence']}" for r in res["variants"]), "", "![ablation](ablation.png)", ""]
    return "\n".join(lines)


def _minutes(row: dict[str, Any]) -> str:
    return "-" if not row.get("seconds") else f"{row['seconds'] / 60:.1f}"


def _n(row: dict[str, Any], key: str) -> str:
    return "-" if row.get(key) is None else f"{row[key]:,}"


def _pm(mean: float, ci: float | None) -> str:
    return f"{mean:.3f}" + (f" ± {ci:.3f}" if ci is not None else "")


def dry_run(a: Ablation) -> dict[str, Any]:
    """Each run's plan and full cost, then what each adds: samples an earlier run buys (the shared sample and eval
    caches) are counted once, so the ablation's total is what it will really spend."""
    from ..stages.estimates import total
    from .plan import dry_run as plan_one

    out: dict[str, Any] = {"runs": {}}
    bought: dict[str, int] = {}  # samples already bought per sample set, by the runs before
    every: list[dict[str, Any]] = []
    for (variant, seed), p in a.runs.items():
        console.rule(f"[bold]{a.config.name}: {variant}" + (f", seed {seed}" if seed is not None else ""))
        full = plan_one(p)
        shared = [_new_part(key, est, bought) for key, est in sample_sets(p)]
        parts = shared + [est for name, est in full["costs"].items()
                          if p.instance(name).kind not in ("generate", "eval")]
        every += parts
        out["runs"][variant + (f"-seed{seed}" if seed is not None else "")] = {
            "alone": full["total"], "adds": total(parts, p.plan),
            "new_samples": round(sum(x.get("samples") or 0 for x in shared))}
    out["total"] = {**total(every, a.runs["base", (a.config.seeds or [None])[0]].plan),
                    "new_samples": sum(r["new_samples"] for r in out["runs"].values())}
    console.print(json.dumps(out, indent=1))
    return out


def sample_sets(p: Pipeline) -> list[tuple[str, dict[str, Any]]]:
    """(what the samples are, their estimate) for each teacher of each generate stage and each eval: two runs
    with the same key share these samples through the ablation's caches (n aside: a larger n buys the rest)."""
    from ..stages.estimates import eval_estimate, generation_estimate
    from .load import resolve_refs

    out = []
    for inst in p.instances:
        config = resolve_refs(inst, p, prepare=False)
        if inst.kind == "generate":
            for t in config.all_teachers():
                one = config.model_copy(update={"teacher": t, "teachers": []})
                out.append((_key(t, one, config.prompts.model_dump()), generation_estimate(one, p.plan)[0]))
        elif inst.kind == "eval":  # its model's reference resolved above
            what = {k: getattr(config, k) for k in ("model", "benchmark", "benchmark_path", "limit", "size", "seed",
                                                    "gym_args", "date_from", "date_to")}
            teacher = config.teacher.model_copy(update={"model": config.model})
            out.append((_key(teacher, config, what), eval_estimate(config, p.plan)))
    return out


def _key(teacher, cfg, what: dict[str, Any]) -> str:
    from ..generation.plan import sampling_key

    return json.dumps({"teacher": [teacher.engine, teacher.model, teacher.base_url], "what": what,
                       "sampling": sampling_key(cfg), "template": cfg.template.model_dump()},
                      sort_keys=True, default=str)


def _new_part(key: str, est: dict[str, Any], bought: dict[str, int]) -> dict[str, Any]:
    """The part of an estimate no earlier run has bought: additive figures scaled by new samples / samples."""
    samples = est.get("samples")
    if not samples:
        return est
    new = max(0, samples - bought.get(key, 0))
    bought[key] = max(bought.get(key, 0), samples)
    scale = new / samples
    return {**est, **{k: est[k] * scale for k in ("samples", "completion_tokens", "prompt_tokens", "cost_usd",
                                                  "gpu_hours") if est.get(k) is not None}}
