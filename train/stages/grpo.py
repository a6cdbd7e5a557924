"""`factory grpo RUN_DIR --model M` and a pipeline's `grpo` stage: GRPO (TRL's GRPOTrainer, in train/grpo.py) with
the filters as rewards, into RUN_DIR/rl/NAME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.config.grpo import GrpoConfig
from factory.core.context import DIRECT, RunContext
from factory.core.results import StageResult
from factory.stages.estimates import Cost, Estimate, EstimateContext, grpo_estimate, grpo_rollouts
from factory.storage.rundir import RunDir

from . import train, train_in_pipeline, trained_params

KIND, ORDER = "grpo", 50
CLI_ARGUMENT = "run_dir"
CLI_OPTIONS = ("model", "prompts.source=prompts", "max_steps", "resume", "lora", "progress", "launch",
               "num_processes")
INTERRUPTED = "the training processes were stopped; --resume continues from the last complete checkpoint"
Config = GrpoConfig
MODEL_FIELDS = ("model",)


class Result(StageResult):
    """grpo_summary.json: the policy trained, its rewards first and last, timing, where the model is."""

    model: str
    output: str
    data: dict[str, Any]
    steps: int
    resumed_from: str | None = None
    rewards: dict[str, float] = {}
    control: str | None = None
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    timing: dict[str, Any] = {}
    groups_without_signal: Any = None
    completions_scored: int = 0
    processes: int = 1
    distributed: str = "NO"
    context: dict[str, Any] | None = None
    stops_at: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "output": self.output, "rewards": self.rewards, "first": self.first,
                "last": self.last, "prompts": self.data.get("prompts")}

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        first, last = (s.get("first") or {}).get("reward"), (s.get("last") or {}).get("reward")
        return f"{s.get('steps')} steps, reward {first} -> {last}"


def resolve(cfg: GrpoConfig) -> GrpoConfig:
    return cfg


def trained_model(cfg: GrpoConfig) -> Path:
    from ..grpo import final_dir  # light: no torch at import

    return final_dir(cfg)


def default_output(run_dir: Path, name: str) -> Path:
    return RunDir(run_dir).rl(name)


def up_to_date(cfg: GrpoConfig) -> bool:
    return (trained_model(cfg) / "config.json").exists()


def estimate(cfg: GrpoConfig, ctx: EstimateContext) -> Estimate:
    """Two lines: the run (devices, steps, rollouts, tokens) and the recipe (rewards, loss, template)."""
    from ..students import resolve_student

    plan = ctx.plan
    steps, per_step, rollouts = grpo_rollouts(cfg, plan)
    mean = plan.completion_tokens(cfg.max_completion_length)
    gpus = plan.gpus
    device = f"{gpus} GPU{'s' if gpus > 1 else ''}, vLLM {cfg.vllm_mode}" if cfg.use_vllm else "transformers generation"
    tokens = rollouts * mean if rollouts else None
    shown = "?" if tokens is None else f"{tokens / 1e6:,.1f}M" if tokens >= 1e6 else f"{tokens / 1e3:,.0f}k"
    sel = cfg.pass_rates
    source = cfg.prompts.source + (f" (those of pass rate {sel.min_pass_rate}-{sel.max_pass_rate} in "
                                   f"{sel.run or cfg.run_dir})" if sel.enabled else "")
    run_line = (f"{cfg.model} on {source}: {steps or '?'} steps × {per_step} prompts × G={cfg.num_generations} = "
                f"{f'{rollouts:,}' if rollouts else '?'} rollouts (~{shown} tokens at ~{mean} each, "
                f"{cfg.max_completion_length:,} max); {device}")
    rewards = ", ".join(f"{n} ×{w:g}" for n, w in cfg.rewards.active().items())
    positions = cfg.max_position_embeddings or resolve_student(cfg.model).max_position_embeddings
    recipe = (f"rewards {rewards}; loss {cfg.loss_type}, beta {cfg.beta}, clip [{cfg.epsilon}, {cfg.epsilon_high}], "
              f"lr {cfg.lr}, T={cfg.temperature}; template {cfg.template}"
              + (f"; context {positions:,} positions" if positions else "") + ("; LoRA" if cfg.lora else ""))
    params = trained_params("model", cfg.model, ctx)
    cost = grpo_estimate(rollouts, plan.mean_prompt_tokens, mean, params, plan)
    return Estimate(what=f"{run_line}\n{recipe}", cost=Cost(**cost), params_b=params)


def run(cfg: GrpoConfig, ctx: RunContext = DIRECT) -> Result:
    """In this process (torch and TRL load here), or with `launch`, in processes of its own."""
    def here(c: Any, x: RunContext) -> dict[str, Any]:
        from .. import grpo

        return grpo.run(c, x)

    return train(KIND, Result, cfg, ctx, here)


def in_pipeline(cfg: GrpoConfig, ctx: RunContext) -> Result:
    from ..grpo import output_dir

    return train_in_pipeline(KIND, Result, cfg, ctx, output_dir(cfg))
