"""`factory generate`: a teacher writes traces for every prompt × n; they land in `traces/` Parquet shards.

Every finished sample goes to the cache at once; a rerun (after a crash, a raised n or a changed setting)
requests only what the cache lacks. Shards are rebuilt from the cache at the end, atomically.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config.loader import artifact_config, fingerprint
from ..config.stages import GenerateConfig
from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.jsonfiles import write_json_atomic
from ..executors import generate_missing
from ..generation.budget import Budget
from ..generation.plan import CACHE_FIELDS, make_trace, plan
from ..generation.stats import Bought, GenerateStats, GenerationStats
from ..sources import load_prompts
from ..storage.cache import SampleCache
from ..storage.records import TRACE_SCHEMA, Prompt
from ..storage.rundir import RunDir, write_resolved_config
from ..storage.shards import ShardWriter
from ..teachers import parse_teacher, resolve_engine
from .estimates import Cost, Estimate, EstimateContext, Upstream, generation_estimate

console = Console(stderr=True)

KIND, ORDER = "generate", 10
Config = GenerateConfig
Result = GenerateStats
OUTPUT_FIELD = "out"
MODEL_FIELDS = ("teacher.model",)
CLI_OPTIONS = ("prompts.source=prompts",
               ("teacher", "ENGINE:MODEL, ENGINE in openai, vllm, llamacpp, hf, auto", parse_teacher),
               "teacher.base_url", "sampling.n", "out", "sampling.max_tokens", "prompts.limit", "prompts.size",
               "prompts.seed", "shard", "progress", "executor.kind=executor", "executor.address=ray-address")
INTERRUPTED = "finished samples are cached; rerun the same command to resume"


def resolve(cfg: GenerateConfig) -> GenerateConfig:
    """`engine: auto` of each teacher decided (vLLM, llama.cpp or transformers, by the machine and the model)."""
    teachers = [t.model_copy(update={"engine": resolve_engine(t.engine, t.model)}) for t in cfg.all_teachers()]
    return cfg.model_copy(update={"teacher": teachers[0], "teachers": teachers if cfg.teachers else []})


def up_to_date(cfg: GenerateConfig) -> bool:
    return (RunDir(cfg.out).traces / "manifest.json").exists()


def estimate(cfg: GenerateConfig, ctx: EstimateContext) -> Estimate:
    figures, what = generation_estimate(cfg, ctx.plan)
    return Estimate(what=what, cost=Cost(**figures), upstream=Upstream(
        samples=figures.get("samples"), prompts=figures.get("prompts"), max_tokens=cfg.sampling.max_tokens))


def in_pipeline(cfg: GenerateConfig, ctx: RunContext) -> GenerateStats:
    """A local vLLM engine claims most of a GPU (and spawns its engine process): then the stage runs in a process
    of its own, so that the next stage starts with the memory given back."""
    cfg = resolve(cfg)
    if not any(t.engine == "vllm" for t in cfg.all_teachers()) or cfg.executor.kind == "ray":
        return run(cfg, ctx)
    from ..core.processes import run_command

    stats = RunDir(cfg.out).generate_stats
    stats.unlink(missing_ok=True)  # the child writes this run's
    run_command("generate", cfg, RunDir(cfg.out).root / "launch.generate.yaml", ctx)
    return GenerateStats.read(stats, "generation statistics")


def run(cfg: GenerateConfig, ctx: RunContext = DIRECT) -> GenerateStats:
    started = time.perf_counter()
    prompts = load_prompts(cfg.prompts)  # bad input fails here, before a request is sent or a file written
    if cfg.sampling.adaptive.enabled:
        check_adaptive(cfg, prompts)
    cfg = resolve(cfg)
    teachers = cfg.all_teachers()
    if cfg.shard:
        prompts, cfg = in_shard(prompts, cfg)
    run_dir = check_out_dir(Path(cfg.out))
    created = not run_dir.exists()
    budget = Budget(cfg.budget, cfg.teacher.prices, cfg.sampling.max_tokens) if cfg.budget.any() else None
    cache_dir = Path(cfg.cache) if cfg.cache else RunDir(run_dir).cache
    with SampleCache(cache_dir, CACHE_FIELDS) as cache:  # the run's lock: taken before anything else is written
        try:
            parts = []
            for teacher in teachers:  # one after another: each its own plan and cache keys (its model is in them)
                one = cfg.model_copy(update={"teacher": teacher})
                work = plan(one, prompts, cfg.samples_per_prompt())
                bought = generate_missing(one, work, cache, budget, cfg.sampling.adaptive.enabled)
                bought.stats.teacher = f"{teacher.engine}:{teacher.model}"
                parts.append((one, work, bought))
            stats = _all_teachers([b.stats for _, _, b in parts])
            written = _write_traces(cfg, parts, cache, bool(stats.stopped_by))
        except BaseException:
            if created and len(cache) == 0 and not cfg.cache:
                _remove_empty_run(run_dir)  # nothing was bought: leave no empty run behind
            raise
    fp = write_resolved_config(run_dir, "generate", cfg, ctx)
    report = GenerateStats(**{**stats.model_dump(exclude_none=True), **written,
                              "seconds": round(time.perf_counter() - started, 2), "fingerprint": fp})
    write_json_atomic(RunDir(run_dir).generate_stats, report.to_json())
    _print_report(cfg, report)
    if report.stopped_by:
        console.print(f"[yellow]{report.stopped_by}[/]: stopped; the traces hold the {report.ok:,} samples "
                      "bought; rerun with a larger budget to go on")
    if report.ok == 0 and report.rows:
        first = next(iter(report.failed_by_class), "unknown")
        raise FactoryError(f"{cfg.out}: no sample succeeded ({report.failed} failed, mostly {first}); "
                           f"see the error column of {cfg.out}/traces")
    if report.failed:
        console.print(f"{report.failed} samples failed (see the error column; rerun to retry them)")
    return report


def check_adaptive(cfg: GenerateConfig, prompts: list[Prompt]) -> None:
    """Adaptive rounds stop a prompt once its samples verify: a prompt with nothing to verify against would buy
    max_n samples and be called too hard. And a fixed n it would ignore is said, not silently dropped."""
    unverifiable = [p for p in prompts if not (p.tests if p.task == "code" else
                                               p.reference_answer or p.task.startswith("gym:"))]
    if unverifiable:
        first = unverifiable[0]
        what = "tests" if first.task == "code" else "reference answer"
        raise FactoryError(f"{cfg.prompts.source}: sampling.adaptive needs a verifier, and {len(unverifiable)} of "
                           f"{len(prompts)} prompts have none (first: prompt {first.prompt_id}, no {what}); set "
                           "prompts.answer_field (or tests_field), or sample a fixed n")
    from ..executors.adaptive import verify_config

    verify_config(cfg)  # its filters' settings: a bad one named now, before anything is bought
    if "n" in cfg.sampling.model_fields_set:
        console.print(f"[yellow]warning[/]: sampling.n={cfg.sampling.n} is not used: sampling.adaptive decides each "
                      f"prompt's count (first_n {cfg.sampling.adaptive.first_n}, until_kept "
                      f"{cfg.sampling.adaptive.until_kept}, max_n {cfg.sampling.adaptive.max_n})")


def in_shard(prompts: list[Prompt], cfg: GenerateConfig) -> tuple[list[Prompt], GenerateConfig]:
    """Shard I of N: the prompts whose prompt_id (a hash) is I modulo N, the same split on every machine; written
    to OUT/shards/I-of-N, a run directory of its own (its own cache and lock)."""
    index, count = map(int, cfg.shard.split("/"))
    mine = [p for p in prompts if int(p.prompt_id, 16) % count == index]
    if not mine:
        raise FactoryError(f"--shard {cfg.shard}: no prompt of {len(prompts)} falls in this shard")
    return mine, cfg.model_copy(update={"out": str(RunDir(cfg.out).shard(index, count))})


def check_out_dir(run_dir: Path) -> Path:
    """`--out` must be a directory this process can write: one line otherwise, before anything is created."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FactoryError(f"{run_dir}: --out is a file, not a run directory")
    existing = next((p for p in [run_dir, *run_dir.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise FactoryError(f"{run_dir}: cannot create the run directory: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FactoryError(f"{run_dir}: cannot create the run directory: {existing} is not writable")
    return run_dir


def _remove_empty_run(run_dir: Path) -> None:
    """Called by the lock holder only, while it holds the lock: removes the empty cache it made, then the run
    directory if nothing else is in it. Never removes what another process put there."""
    cache = RunDir(run_dir).cache
    for seg in cache.glob("seg-*.log"):
        if seg.stat().st_size == 0:
            seg.unlink()
    if [p.name for p in cache.iterdir()] == ["LOCK"]:
        (cache / "LOCK").unlink()
    for d in (cache, run_dir):
        try:
            d.rmdir()  # only when empty
        except OSError:
            return


def _write_traces(cfg: GenerateConfig, parts: list[tuple[GenerateConfig, Any, Bought]], cache: SampleCache,
                  bought_only: bool = False) -> dict[str, Any]:
    """One row per sample of each teacher's plan (a failed or missing one as an error row); `bought_only` (a
    budget stopped the run): only the samples bought or tried. Teacher k's sample i is the trace's sample
    k * stride + i, so (prompt_id, sample_index) names one trace however many teachers wrote."""
    counts: Counter[str] = Counter()
    stride = cfg.samples_per_prompt()
    names = ", ".join(f"{t.engine}:{t.model}" for t in cfg.all_teachers())
    with ShardWriter(RunDir(cfg.out).traces, TRACE_SCHEMA, cfg.shard_rows,
                     extra={"stage": "generate", "teacher": names, "fingerprint": fingerprint(cfg),
                            "config": artifact_config(cfg)}) as writer:
        for k, (one, work, bought) in enumerate(parts):
            errors = bought.errors
            for prompt, messages, keys in work:
                rows = []
                for index, key in enumerate(keys):
                    if bought_only and key not in cache and key not in errors:
                        continue
                    trace = make_trace(one, prompt, messages, k * stride + index, cache.get(key), errors.get(key))
                    counts["failed" if trace.error else "ok"] += 1
                    counts["truncated"] += trace.truncated
                    counts["tokens"] += trace.completion_tokens or 0
                    counts[f"error:{(trace.error or '').split(':')[0]}"] += bool(trace.error)
                    rows.append(trace.to_row())
                writer.write_rows(rows)
        manifest = writer.close()
    failed = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("error:") and v}
    return {"rows": manifest["rows"], "ok": counts["ok"], "failed": counts["failed"],
            "failed_by_class": failed, "truncated": counts["truncated"],
            "trace_completion_tokens": counts["tokens"]}  # the traces' own (completion_tokens: what was bought)


def _all_teachers(stats: list[GenerationStats]) -> GenerationStats:
    """One teacher: its stats. Several: the sums over the same prompts, and each teacher's own under by_teacher."""
    if len(stats) == 1:
        return stats[0]
    total = sum(stats[1:], stats[0])
    return GenerateStats(**{**total.model_dump(exclude_none=True, exclude={"teacher", "adaptive"}),
                            "prompts": stats[0].prompts}, by_teacher=stats)


def _print_report(cfg: GenerateConfig, r: GenerateStats) -> None:
    table = Table(title=f"generate -> {cfg.out}/traces", show_header=False)
    shown = r.model_dump(exclude_none=True)
    for label, key in [("prompts", "prompts"), ("samples", "samples"), ("from cache", "cached"),
                       ("requested now", "requested"), ("ok", "ok"), ("failed", "failed"),
                       ("truncated (finish_reason=length)", "truncated"), ("completion tokens", "completion_tokens"),
                       ("tokens/s", "completion_tokens_per_s"), ("cost (USD)", "cost_usd"), ("seconds", "seconds")]:
        if key in shown:
            table.add_row(label, str(shown[key]))
    if r.failed_by_class:
        table.add_row("failures", ", ".join(f"{k}: {v}" for k, v in r.failed_by_class.items()))
    for t in r.by_teacher or []:
        table.add_row(f"  {t.teacher}", f"{t.samples} samples, {t.cached} cached, {t.completion_tokens or 0} new "
                      "tokens" + (f", ${t.cost_usd}" if t.cost_usd is not None else ""))
    a = r.adaptive
    if a:
        table.add_row("adaptive rounds", " → ".join(str(x["prompts"]) for x in a["rounds"]) + " prompts")
        table.add_row("samples bought", f"{a['samples_bought']:,} of {a['samples_fixed_max_n']:,} for a fixed "
                      f"n={a['max_n']} ({a['saved_share']:.0%} saved)")
        table.add_row("prompts", ", ".join(f"{k}: {v}" for k, v in sorted(a["prompts_by_status"].items())))
    console.print(table)
