"""What a stage will cost, known before it runs: prompts, samples, tokens, dollars and GPU-hours. Below the stage
table (registry) and the plan, which both show it.

Every figure rests on assumptions the pipeline's `plan:` section states (typed below, each with its default and
printed in the dry run): tokens per sample, the GPU and its peak, the MFU training reaches, and the throughput of
a local engine. Training compute is the usual dense-transformer estimate, 6 × parameters FLOPs per token
(Kaplan et al. 2020; gradient checkpointing adds about a third more, not counted)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ..config.stages import DistillConfig, EvalSettings, GenerateConfig
from ..config.strict import Strict
from ..sources.spec import parse_source

# Dense BF16 tensor-core peaks (no sparsity), from NVIDIA's data sheets (SXM parts).
GPU_PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H200": 989.0, "B200": 2250.0, "L40S": 362.0, "A10G": 70.0}
# Problems per benchmark (livecodebench's depend on its date window: unknown before it is read).
BENCHMARK_SIZES = {"math500": 500, "aime24": 30, "aime25": 30, "gpqa-diamond": 198, "humaneval": 164}


class PlanAssumptions(Strict):
    """The pipeline's `plan:` section: what the dry run assumes where nothing has run yet."""

    mean_prompt_tokens: int = Field(200, ge=1, description="Tokens of a prompt, as the teacher sees it")
    mean_completion_tokens: int | None = Field(None, ge=1, description="Tokens of a completion (default: half of "
                                               "the stage's generation limit)")
    gpus: int = Field(1, ge=1, description="GPUs a training or local generation stage runs on")
    gpu: Literal["A100", "H100", "H200", "B200", "L40S", "A10G"] = Field(
        "H100", description="The GPU the GPU-hours are for (its dense BF16 peak is in GPU_PEAK_TFLOPS)")
    gpu_peak_tflops: float | None = Field(None, gt=0, description="The GPU's peak, to override the table's")
    mfu: float = Field(0.35, gt=0, le=1, description="Model FLOPs utilisation training reaches (0.3-0.4 is "
                       "typical of FSDP SFT at long context)")
    generation_tokens_per_s: float = Field(2500.0, gt=0, description="Completion tokens per second per GPU of "
                                           "a local vLLM engine (a 7B model at high batch on an H100)")
    kept_share: float = Field(0.6, gt=0, le=1, description="Share of generated samples the filters keep (what "
                              "distillation trains on)")
    gpu_hour_usd: float | None = Field(None, gt=0, description="Price of a GPU-hour, to put GPU stages in the total")

    def peak_flops(self) -> float:
        return (self.gpu_peak_tflops or GPU_PEAK_TFLOPS[self.gpu]) * 1e12

    def completion_tokens(self, max_tokens: int) -> int:
        return min(self.mean_completion_tokens or max_tokens // 2, max_tokens)


def prompt_count(cfg) -> int | None:
    """How many prompts a generate or grpo config reads, when known without loading them."""
    n = parse_source(cfg.prompts.source).known_size(cfg.prompts.size)
    return min(n, cfg.prompts.limit) if n is not None and cfg.prompts.limit else (n or cfg.prompts.limit)


def _round(hours: float) -> float:
    return round(hours, 1) if hours >= 10 else float(f"{hours:.3g}")


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:,.1f}" if h >= 1 else f"{h:.2g}"


def _tokens(t: int | None) -> str:
    return "?" if t is None else f"{t / 1e9:,.2f}B" if t >= 1e9 else f"{t / 1e6:,.1f}M" if t >= 1e6 else f"{t / 1e3:,.0f}k"


def generation_estimate(g: GenerateConfig, plan: PlanAssumptions) -> tuple[dict[str, Any], str]:
    """(prompts, samples, tokens and cost as numbers; the same as one line). Adaptive sampling: at most max_n."""
    prompts, teachers = prompt_count(g), g.all_teachers()
    per_sample, n = plan.completion_tokens(g.sampling.max_tokens), g.samples_per_prompt()
    est: dict[str, Any] = {"prompts": prompts, "samples": prompts * n * len(teachers) if prompts else None}
    if prompts:
        est["completion_tokens"] = est["samples"] * per_sample
        est["prompt_tokens"] = est["samples"] * plan.mean_prompt_tokens
        for t in teachers:  # each teacher's share at its own prices (or on its own GPUs)
            for key, value in _inference_cost(t, est["prompt_tokens"] // len(teachers),
                                              est["completion_tokens"] // len(teachers), plan).items():
                est[key] = est.get(key, 0) + value
        est.update({k: (round(v, 2) if k == "cost_usd" else _round(v)) for k, v in est.items()
                    if k in ("cost_usd", "gpu_hours")})
    capped = _cap_by_budget(g, est)
    bound = "at most " if g.sampling.adaptive.enabled else ""
    who = ", ".join(f"{t.engine}:{t.model}" for t in teachers)
    what = (f"{who} on {g.prompts.source}: {prompts or '?'} prompts × {bound}{n}"
            + (f" × {len(teachers)} teachers" if len(teachers) > 1 else "")
            + f" = {est['samples'] or '?'} samples, ~{per_sample} completion tokens each")
    if "completion_tokens" in est:
        what += f" (~{_tokens(est['completion_tokens'])} tokens)"
    if capped:
        what += f"; {capped}"
    if g.executor.kind == "ray":
        where = g.executor.address or "a Ray instance started here"
        if g.teacher.engine == "vllm":
            actors = f"{g.executor.actors} replicas × " if g.executor.actors else "one replica per "
            what += f"; on Ray ({where}): {actors}{g.teacher.tensor_parallel_size} GPUs (tensor parallel)"
        else:
            what += f"; on Ray ({where}): {g.executor.actors or 'one per CPU'} client actors"
    return est, what


def _cap_by_budget(g: GenerateConfig, est: dict[str, Any]) -> str | None:
    """A budget stops the run: the plan is what the budget lets it buy (every figure scaled alike), and a line
    that says which budget caps it."""
    b, samples = g.budget, est.get("samples")
    if not samples:
        return None
    limits = [("budget.max_samples", b.max_samples, samples),
              ("budget.max_output_tokens", b.max_output_tokens, est.get("completion_tokens")),
              ("budget.max_usd", b.max_usd, est.get("cost_usd"))]
    shares = [(limit / planned, name) for name, limit, planned in limits if limit is not None and planned]
    share, name = min(shares, default=(1.0, None))
    if share >= 1:
        return None
    full = samples
    for key in ("samples", "completion_tokens", "prompt_tokens"):
        est[key] = int(est[key] * share)
    est.update({k: (round(est[k] * share, 2) if k == "cost_usd" else _round(est[k] * share))
                for k in ("cost_usd", "gpu_hours") if est.get(k) is not None})
    return f"capped by {name}: {est['samples']:,} of {full:,} samples"


def _inference_cost(teacher, prompt_tokens: int, completion_tokens: int, plan: PlanAssumptions) -> dict[str, Any]:
    """An API teacher: dollars at its prices (none without them). A local engine: GPU-hours at the assumed
    throughput."""
    if teacher.engine == "openai":
        if not teacher.prices:
            return {}
        p = teacher.prices
        share = p.batch_discount if teacher.batch else 1.0  # a batch API's price
        return {"cost_usd": round(share * (prompt_tokens * p.input_per_mtok + completion_tokens * p.output_per_mtok)
                                  / 1e6, 2)}
    return {"gpu_hours": _round(completion_tokens / plan.generation_tokens_per_s / 3600)}


def training_cost(tokens: int, params_b: float | None, plan: PlanAssumptions) -> dict[str, Any]:
    """GPU-hours for `tokens` trained tokens on a model of `params_b` billion parameters: 6·N·D FLOPs at the
    assumed MFU of the assumed GPU."""
    out: dict[str, Any] = {"train_tokens": tokens}
    if params_b:
        flops = 6 * params_b * 1e9 * tokens
        out.update(flops=flops, gpu_hours=_round(flops / (plan.mfu * plan.peak_flops()) / 3600))
    return out


def params_of(model: str, preset_params: float | None) -> float | None:
    """A preset's parameter count, or one read from the model's name ("...-7B...")."""
    if preset_params:
        return preset_params
    m = re.search(r"(\d+(?:\.\d+)?)\s*[bB]\b", model.replace("-", " ").replace("_", " "))
    return float(m.group(1)) if m else None


class Upstream(Strict):
    """What the stages before a distill stage decide about its data: the samples generated, of how many prompts,
    at what generation limit, and how many traces the filter keeps per prompt at most."""

    samples: int | None = None
    prompts: int | None = None
    max_tokens: int | None = None
    max_per_prompt: int | None = None

    def kept(self, plan: PlanAssumptions) -> int | None:
        if not self.samples:
            return None
        kept = int(self.samples * plan.kept_share)
        if self.max_per_prompt and self.prompts:
            kept = min(kept, self.prompts * self.max_per_prompt)  # selection keeps at most this many per prompt
        return kept


def distill_estimate(d: DistillConfig, plan: PlanAssumptions, upstream: Upstream, epochs: float,
                     params_b: float | None, max_length: int) -> dict[str, Any]:
    """Samples: each mixture source's count (a run directory: what the filter keeps of what was generated),
    × epochs; a sample's tokens: a prompt and a completion as long as the teacher's limit allows, cut at
    max_length."""
    completion = plan.completion_tokens(upstream.max_tokens or max_length)
    per_sample = min(plan.mean_prompt_tokens + completion, max_length)
    samples = 0
    kept = upstream.kept(plan)
    for m in d.mix or [None]:
        count = m.count if m is not None and m.count else kept
        if count is None:
            return {"samples": None}
        samples += math.ceil(count * (m.weight if m is not None and m.weight else 1.0))
    return {"samples": samples, **training_cost(int(samples * per_sample * epochs), params_b, plan)}


def grpo_rollouts(g, plan: PlanAssumptions) -> tuple[int | None, int, int | None]:
    """(optimizer steps, prompts per step over every GPU, rollouts) of a GRPO config."""
    per_step = (g.batch_size or g.num_generations) * g.grad_accum // g.num_generations * plan.gpus
    prompts = prompt_count(g)
    steps = g.max_steps or (int(g.epochs * prompts / per_step) if prompts else None)
    return steps, per_step, steps * per_step * g.num_generations if steps else None


def grpo_estimate(rollouts: int | None, prompt_tokens: int, completion_tokens: int, params_b: float | None,
                  plan: PlanAssumptions) -> dict[str, Any]:
    """Training (6·N·D over prompt and completion tokens) plus sampling the rollouts at the local engine's
    throughput."""
    if not rollouts:
        return {}
    out = {"rollouts": rollouts, **training_cost(rollouts * (prompt_tokens + completion_tokens), params_b, plan)}
    sampling = _round(rollouts * completion_tokens / plan.generation_tokens_per_s / 3600)
    if "gpu_hours" in out:
        out.update(rollout_gpu_hours=sampling, gpu_hours=_round(out["gpu_hours"] + sampling))
    return out


def eval_estimate(e: EvalSettings, plan: PlanAssumptions) -> dict[str, Any]:
    name = e.benchmark
    problems = e.size if name.startswith("gym:") else BENCHMARK_SIZES.get(name)
    if problems and e.limit:
        problems = min(problems, e.limit)
    if not problems:
        return {}
    samples = problems * e.sampling.n
    completion = samples * plan.completion_tokens(e.sampling.max_tokens)
    return {"samples": samples, "completion_tokens": completion,
            **_inference_cost(e.teacher, samples * plan.mean_prompt_tokens, completion, plan)}


def cost_line(est: dict[str, Any], plan: PlanAssumptions) -> str:
    """A stage's figures in one cell: dollars (API), GPU-hours (and their price), tokens."""
    parts = []
    if est.get("cost_usd") is not None:
        parts.append(f"${est['cost_usd']:,.2f}")
    if est.get("gpu_hours") is not None:
        hours = est["gpu_hours"]
        parts.append(f"{_hours(hours)} GPU-h ({_hours(hours / plan.gpus)} h on {plan.gpus}×{plan.gpu})"
                     + (f" ≈ ${hours * plan.gpu_hour_usd:,.0f}" if plan.gpu_hour_usd else ""))
    tokens = est.get("completion_tokens") or est.get("train_tokens")
    if tokens:
        parts.append(f"{_tokens(tokens)} tokens" + (" trained" if "train_tokens" in est else ""))
    return "; ".join(parts) or "-"


def total(estimates: list[dict[str, Any]], plan: PlanAssumptions) -> dict[str, Any]:
    usd = sum(e.get("cost_usd") or 0 for e in estimates)
    hours = sum(e.get("gpu_hours") or 0 for e in estimates)
    out = {"cost_usd": round(usd, 2), "gpu_hours": _round(hours)}
    if plan.gpu_hour_usd:
        out["all_in_usd"] = round(usd + hours * plan.gpu_hour_usd, 2)
    return out


def assumptions_line(plan: PlanAssumptions) -> str:
    return (f"assumed (plan: section): {plan.gpu} at {plan.peak_flops() / 1e12:,.0f} TFLOP/s dense BF16, MFU "
            f"{plan.mfu:.0%}, training 6·N FLOPs per token; local generation {plan.generation_tokens_per_s:,.0f} "
            f"tokens/s per GPU; {plan.mean_prompt_tokens} prompt tokens, "
            f"{plan.mean_completion_tokens or 'half the limit'} completion tokens; filters keep "
            f"{plan.kept_share:.0%}" + (f"; ${plan.gpu_hour_usd}/GPU-hour" if plan.gpu_hour_usd else ""))


class Cost(Strict):
    """A stage's figures before it runs (None: not known, e.g. a prompt source of unknown size)."""

    prompts: int | None = None
    samples: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    gpu_hours: float | None = None
    train_tokens: int | None = None
    flops: float | None = None
    rollouts: int | None = None
    rollout_gpu_hours: float | None = None

    def figures(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Estimate(Strict):
    """What `factory run --dry-run` shows for a stage: what it will do (one or more lines) and its cost; and what
    it tells the stages after it: the data they get (`upstream`), the size of the model it trains (`params_b`)."""

    what: str
    cost: Cost = Field(default_factory=Cost)
    upstream: Upstream | None = None
    params_b: float | None = None


@dataclass
class EstimateContext:
    """What a stage's estimate knows besides its config: the plan's assumptions, what the stages before it decided
    about the data, the parameter counts of the models they trained (by instance name; STUDENT: the nearest
    distill's), and its own config before references were resolved (`stage:NAME` is a name, not a path)."""

    plan: PlanAssumptions
    upstream: Upstream = field(default_factory=Upstream)
    trained: dict[str, float | None] = field(default_factory=dict)
    raw: Any = None


STUDENT = "@student"  # in EstimateContext.trained: the nearest distill stage's parameter count (`student` names it)
