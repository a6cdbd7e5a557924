"""The stage kinds a pipeline can name. Each entry says how to build its config, run it, tell (without side
effects: nothing is downloaded, converted or built) whether its outputs exist, and describe its result and plan.
A new kind is one module (under factory/stages/, or train/ for the torch side) and one entry here.

Stage modules are imported when a stage runs, not before: the CLI stays light (no torch to plan a pipeline).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..config.grpo import GrpoConfig
from ..config.stages import CardConfig, DistillConfig, EvalConfig, FilterConfig, GenerateConfig
from ..storage.rundir import RunDir
from ..storage.shards import read_json, read_json_object

if TYPE_CHECKING:
    from .load import Pipeline, StageInstance


@dataclass(frozen=True)
class Context:
    """What a stage gets besides its config: the pipeline, its own instance, and whether it resumes."""

    pipeline: Pipeline
    instance: StageInstance
    resume: bool = False
    model_ref: Callable[[str], str] = str  # `stage:NAME`, `student`, ... -> a model path (given by the caller,
    # which knows the pipeline's loader; this table sits below it)


@dataclass(frozen=True)
class Stage:
    config_model: type[BaseModel] | None  # None: eval, a list of named EvalConfigs
    run: Callable[[Any, Context], dict[str, Any]]  # -> the summary kept in pipeline_state.json
    outputs_exist: Callable[[Any], bool]
    describe: Callable[[dict[str, Any]], str]  # the summary as one line of the result table
    plan: Callable[[Any, Context], str]  # the dry run's line
    dir_key: str = "run_dir"  # the config field the pipeline's run directory goes into
    model_fields: tuple[str, ...] = ()  # dotted fields that may name a model by reference (stage:NAME, student...)
    trained_model: Callable[[Any], Path] | None = None  # what `stage:NAME` means for an instance of this kind
    default_output: Callable[[Path, str], Path] | None = None  # a named instance's own output (run dir, name)


def _own_process(teacher) -> bool:
    """A local vLLM engine claims most of a GPU (and spawns its engine process): such a stage runs in a process
    of its own, so that the next stage starts with the memory given back."""
    from ..teachers import resolve_engine

    return resolve_engine(teacher.engine, teacher.model) == "vllm"


def _run_generate(cfg: GenerateConfig, ctx: Context) -> dict[str, Any]:

    if any(_own_process(t) for t in cfg.all_teachers()) and not cfg.executor.kind == "ray":
        from ..core.processes import run_command

        stats = RunDir(cfg.out).generate_stats
        stats.unlink(missing_ok=True)  # the child writes this run's
        run_command("generate", cfg, RunDir(cfg.out).root / "launch.generate.yaml")
        r = read_json(stats, "generation statistics")
    else:
        from ..stages import generate

        r = generate.run(cfg)
    return {k: r.get(k) for k in ("samples", "cached", "requested", "ok", "failed", "completion_tokens")}


def _describe_generate(s: dict[str, Any]) -> str:
    return (f"{s.get('samples')} samples ({s.get('cached')} cached, {s.get('failed')} failed), "
            f"{s.get('completion_tokens') or 0} new tokens")


def _run_filter(cfg: FilterConfig, ctx: Context) -> dict[str, Any]:
    from ..stages import filter as filter_stage

    r = filter_stage.run(cfg)
    return {"in": r["funnel"]["in"], "kept": r["funnel"]["kept"]}


def _plan_filter(f: FilterConfig, ctx: Context) -> str:
    what = ", ".join(f.active())
    if "decontam" in f.active():
        what += f"; decontaminated against {', '.join(f.decontam.benchmarks) or 'nothing (no benchmarks)'}"
    what += f"; length limit {f.length.max_tokens or 'the generation limit'}"
    if f.executor.kind == "ray":
        what += f"; on Ray ({f.executor.address or 'a Ray instance started here'}), dedup shuffled by LSH band"
    return what


def _card_path(cfg: CardConfig) -> Path:
    return Path(cfg.out or RunDir(cfg.run_dir).card) / "README.md"


def _run_card(cfg: CardConfig, ctx: Context) -> dict[str, Any]:
    from ..stages import card

    return {"card": str(card.run(cfg))}


def _run_distill(cfg: DistillConfig, ctx: Context) -> dict[str, Any]:
    from train.launch import train_in_processes
    from train.students import output_dir

    out = output_dir(cfg)
    if not ctx.resume and out.exists():
        shutil.rmtree(out)  # a changed config invalidates the old checkpoints: never resume across configs
    # in processes of its own: `launch` decides how many (every GPU of the node), the pipeline keeps its state
    r = train_in_processes(cfg.model_copy(update={"resume": ctx.resume}), "distill")
    return {k: r.get(k) for k in ("steps", "final_loss", "output", "nonpad_share")} | {"samples": r["data"]["samples"]}


def _plan_distill(d: DistillConfig, ctx: Context) -> str:
    from train.students import resolve_settings

    s = resolve_settings(d)
    what = f"{d.student}, epochs {s.epochs}, lr {s.lr}, max_length {s.max_length}" + (", LoRA" if d.lora else "")
    if s.max_position_embeddings:
        what += f"; context extended to {s.max_position_embeddings:,} positions" + (
            f", rope_theta {s.rope_theta:,.0f}" if s.rope_theta else "")
    if d.mix:
        what += "; mixture: " + ", ".join(
            f"{m.source} ({'reasoning' if m.reasoning else 'non-reasoning'}"
            + (f", {m.count:,}" if m.count else f", ×{m.weight}" if m.weight else "") + ")" for m in d.mix)
    return what


def _describe_distill(s: dict[str, Any]) -> str:
    return f"{s.get('samples')} samples, {s.get('steps')} steps, final loss {s.get('final_loss')}"


def _eval_cfg(cfg: EvalConfig, ctx: Context) -> EvalConfig:
    return cfg.model_copy(update={"model": ctx.model_ref(cfg.model)})


def _run_evals(evals: list[tuple[str, EvalConfig]], ctx: Context) -> dict[str, Any]:
    from ..stages import eval as eval_stage

    out = {}
    for name, cfg in evals:
        resolved = _eval_cfg(cfg, ctx)
        m = _eval_in_process(resolved) if _own_process(resolved.teacher) else eval_stage.run(resolved)["metrics"]
        out[name] = {"file": str(eval_stage.result_path(resolved)), "model": resolved.model,
                     "benchmark": resolved.benchmark, **{k: v for k, v in m.items() if isinstance(v, dict)}}
    return out


def _eval_in_process(cfg: EvalConfig) -> dict[str, Any]:

    from ..core.processes import run_command
    from ..stages.eval import result_path

    path = result_path(cfg)
    run_command("eval", cfg, path.with_name(f".{path.stem}.launch.yaml"))
    return read_json_object(path, "eval result", {"metrics": dict})["metrics"]


def _evals_done(evals: list[tuple[str, EvalConfig]]) -> bool:
    """Each result's file name comes from its label (the eval's name), never from the model: nothing to resolve."""
    from ..stages.eval import result_path

    return all(result_path(cfg).exists() for _, cfg in evals)


def _plan_evals(evals: list[tuple[str, EvalConfig]], ctx: Context) -> str:
    lines = []
    for name, e in evals:
        s = e.sampling
        lines.append(f"{name}: {e.model} on {e.benchmark}, n={s.n} (pass@1 over {s.n}; "
                     f"{', '.join(f'pass@{k}, maj@{k}' for k in e.ks if 1 < k <= s.n) or 'no pass@k'}), "
                     f"T={s.temperature}, top_p={s.top_p}, max_tokens={s.max_tokens}")
    return "\n".join(lines)


def _describe_evals(s: dict[str, Any]) -> str:
    return ", ".join(f"{n}: {v['pass@1']['mean']:.3f}" for n, v in s.items() if "pass@1" in v)


def _run_grpo(cfg, ctx: Context) -> dict[str, Any]:
    from train.grpo import output_dir
    from train.launch import train_in_processes

    out = output_dir(cfg)
    if not ctx.resume and out.exists():
        shutil.rmtree(out)  # as distill: never resume across configs
    r = train_in_processes(cfg.model_copy(update={"resume": ctx.resume}), "grpo")
    return {k: r.get(k) for k in ("steps", "output", "rewards", "first", "last")} | {"prompts": r["data"]["prompts"]}


def _grpo_final(cfg) -> Path:
    from train.grpo import final_dir  # light: no torch at import

    return final_dir(cfg)


def _plan_grpo(g, ctx: Context) -> str:
    """Two lines: the run (devices, steps, rollouts, tokens) and the recipe (rewards, loss, template)."""
    from train.students import resolve_student

    from .estimates import grpo_rollouts

    plan = ctx.pipeline.plan
    gpus = plan.gpus
    steps, per_step, rollouts = grpo_rollouts(g, plan)
    mean = plan.completion_tokens(g.max_completion_length)
    device = f"{gpus} GPU{'s' if gpus > 1 else ''}, vLLM {g.vllm_mode}" if g.use_vllm else "transformers generation"
    tokens = rollouts * mean if rollouts else None
    shown = "?" if tokens is None else f"{tokens / 1e6:,.1f}M" if tokens >= 1e6 else f"{tokens / 1e3:,.0f}k"
    sel = g.pass_rates
    source = g.prompts.source + (f" (those of pass rate {sel.min_pass_rate}-{sel.max_pass_rate} in "
                                 f"{sel.run or g.run_dir})" if sel.enabled else "")
    run = (f"{g.model} on {source}: {steps or '?'} steps × {per_step} prompts × G={g.num_generations} = "
           f"{f'{rollouts:,}' if rollouts else '?'} rollouts (~{shown} tokens at ~{mean} each, "
           f"{g.max_completion_length:,} max); {device}")
    rewards = ", ".join(f"{n} ×{w:g}" for n, w in g.rewards.active().items())
    positions = g.max_position_embeddings or resolve_student(g.model).max_position_embeddings
    recipe = (f"rewards {rewards}; loss {g.loss_type}, beta {g.beta}, clip [{g.epsilon}, {g.epsilon_high}], lr {g.lr},"
              f" T={g.temperature}; template {g.template}" + (f"; context {positions:,} positions" if positions else "")
              + ("; LoRA" if g.lora else ""))
    return f"{run}\n{recipe}"


def _describe_grpo(s: dict[str, Any]) -> str:
    first, last = (s.get("first") or {}).get("reward"), (s.get("last") or {}).get("reward")
    return f"{s.get('steps')} steps, reward {first} -> {last}"


def _plan_generate(g: GenerateConfig, ctx: Context) -> str:
    from .estimates import generation_estimate

    return generation_estimate(g, ctx.pipeline.plan)[1]


def _distill_final(cfg: DistillConfig) -> Path:
    from train.students import final_dir

    return final_dir(cfg)


STAGES: dict[str, Stage] = {
    "generate": Stage(GenerateConfig, _run_generate, lambda c: (RunDir(c.out).traces / "manifest.json").exists(),
                      _describe_generate, _plan_generate, dir_key="out", model_fields=("teacher.model",)),
    "filter": Stage(FilterConfig, _run_filter, lambda c: RunDir(c.run_dir).filter_stats.exists(),
                    lambda s: f"kept {s.get('kept')} of {s.get('in')}", _plan_filter),
    "card": Stage(CardConfig, _run_card, lambda c: _card_path(c).exists(), lambda s: s.get("card", ""),
                  lambda c, ctx: str(_card_path(c))),
    "distill": Stage(DistillConfig, _run_distill, lambda c: (_distill_final(c) / "config.json").exists(),
                     _describe_distill, _plan_distill,
                     model_fields=("student",), trained_model=_distill_final,
                     default_output=lambda run_dir, name: RunDir(run_dir).student(name)),
    "grpo": Stage(GrpoConfig, _run_grpo, lambda c: (_grpo_final(c) / "config.json").exists(), _describe_grpo,
                  _plan_grpo, model_fields=("model",), trained_model=_grpo_final,
                  default_output=lambda run_dir, name: RunDir(run_dir).rl(name)),
    "eval": Stage(None, _run_evals, _evals_done, _describe_evals, _plan_evals, dir_key="out"),
}
KINDS = list(STAGES)  # also the order a plain `stages:` list is run in
