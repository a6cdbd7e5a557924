"""What a stage will cost, known before it runs: prompts, samples, tokens and dollars. Below the stage table
(registry) and the plan, which both show it."""

from __future__ import annotations

from typing import Any

from ..config import GenerateConfig
from ..sources.spec import parse_source


def prompt_count(cfg) -> int | None:
    """How many prompts a generate or grpo config reads, when known without loading them."""
    n = parse_source(cfg.prompts.source).known_size(cfg.prompts.size)
    return min(n, cfg.prompts.limit) if n is not None and cfg.prompts.limit else (n or cfg.prompts.limit)


def generation_estimate(g: GenerateConfig, plan: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(prompts, samples, tokens and cost as numbers; the same as one line)."""
    prompts = prompt_count(g)
    per_sample = int(plan.get("mean_completion_tokens", g.sampling.max_tokens // 2))
    prompt_tokens = int(plan.get("mean_prompt_tokens", 200))
    est: dict[str, Any] = {"prompts": prompts, "samples": prompts * g.sampling.n if prompts else None}
    if prompts:
        est["completion_tokens"] = est["samples"] * per_sample
        est["prompt_tokens"] = est["samples"] * prompt_tokens
        if g.teacher.prices:
            est["cost_usd"] = round((est["prompt_tokens"] * g.teacher.prices.input_per_mtok
                                     + est["completion_tokens"] * g.teacher.prices.output_per_mtok) / 1e6, 2)
    what = (f"{g.teacher.engine}:{g.teacher.model} on {g.prompts.source}: {prompts or '?'} prompts × "
            f"{g.sampling.n} = {est['samples'] or '?'} samples, ~{per_sample} completion tokens each")
    if "completion_tokens" in est:
        tokens = est["completion_tokens"]
        what += f" (~{tokens / 1e6:.1f}M tokens" if tokens >= 1e6 else f" (~{tokens / 1e3:.0f}k tokens"
        what += f", ~${est['cost_usd']:,.2f})" if "cost_usd" in est else ")"
    if g.executor.kind == "ray":
        where = g.executor.address or "a Ray instance started here"
        if g.teacher.engine == "vllm":
            actors = f"{g.executor.actors} replicas × " if g.executor.actors else "one replica per "
            what += f"; on Ray ({where}): {actors}{g.teacher.tensor_parallel_size} GPUs (tensor parallel)"
        else:
            what += f"; on Ray ({where}): {g.executor.actors or 'one per CPU'} client actors"
    return est, what
