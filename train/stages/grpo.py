"""`factory grpo RUN_DIR --model M` and a pipeline's `grpo` stage: GRPO (TRL's GRPOTrainer, in train/grpo.py) with
the filters as rewards, into RUN_DIR/rl/NAME.

Its config's defaults follow DeepSeek-R1's RL recipe where it states a number (16 samples per question,
temperature 1.0, learning rate 3e-6, KL coefficient 0.001, 32,768-token completions) and DAPO where R1 is silent
or where TRL's current practice follows DAPO (token-level loss `dapo`, clip-higher 0.28, truncated completions
masked out of the loss). Every departure from R1 is said in its field's help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.config.stages import PromptsConfig, TemplateConfig, TrainingSettings, check_path_name
from factory.config.strict import Strict
from factory.core.context import DIRECT, RunContext
from factory.core.results import StageResult
from factory.filters.rewards import RewardsConfig
from factory.stages.estimates import Cost, Estimate, EstimateContext, grpo_estimate, grpo_rollouts
from factory.storage.rundir import RunDir

from . import train, train_in_pipeline, trained_params


class PassRateSelection(Strict):
    """Offline difficulty filtering: a group whose completions all earn the same reward has zero advantage and
    teaches GRPO nothing, so prompts the policy always or never solves are left out before training."""

    enabled: bool = Field(False, description="Train only on prompts whose pass rate lies in [min_pass_rate, "
                          "max_pass_rate], as a filter stage graded them: run generate (this policy as the teacher, "
                          "the rollouts' temperature and length) and filter over the same prompts first")
    run: str | None = Field(None, description="The run directory whose filtered shards hold the pass rates "
                            "(default: this run's run_dir)")
    min_pass_rate: float = Field(0.1, ge=0, le=1, description="Drop prompts solved less often (0.1 with 8 samples: "
                                 "at least 1 of 8 right)")
    max_pass_rate: float = Field(0.9, ge=0, le=1, description="Drop prompts solved more often (0.9 with 8 samples: "
                                 "at least 1 of 8 wrong)")

    @model_validator(mode="after")
    def _range(self) -> PassRateSelection:
        if self.min_pass_rate > self.max_pass_rate:
            raise ValueError(f"min_pass_rate ({self.min_pass_rate}) is above max_pass_rate ({self.max_pass_rate})")
        return self


class GrpoConfig(TrainingSettings):
    run_dir: str = Field("runs/default", description="Run directory (outputs go to RUN_DIR/rl/NAME)")
    model: str = Field("qwen2.5-coder-0.5b", description="The policy: preset, bundled alias, path or Hub id")
    name: str | None = Field(None, description="Output name under RUN_DIR/rl (default: from the model)")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    pass_rates: PassRateSelection = Field(default_factory=PassRateSelection,
                                          description="Keep only prompts of mid-range pass rate (a first pass)")
    template: Literal["auto", "r1-zero", "chat"] = Field(
        "auto", description="r1-zero: R1-Zero's plain-text template ('A conversation between User and Assistant...') "
        "for base models; chat: the model's chat template; auto: chat when the tokenizer has one")
    user_template: TemplateConfig = Field(default_factory=TemplateConfig, description="The problem's wording "
                                          "(as generate's template), placed in the r1-zero or chat template")
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    num_generations: int = Field(16, ge=2, description="Group size G: completions per prompt (R1: 16)")
    batch_size: int | None = Field(None, ge=1, description="Completions per device per micro-batch (default: G)")
    grad_accum: int = Field(4, ge=1, description="Micro-batches per optimizer step")
    max_prompt_length: int = Field(1024, ge=8, description="Prompts longer than this (tokens) are dropped and counted")
    max_completion_length: int = Field(32768, ge=8, description="Most new tokens per completion (R1: 32,768; set "
                                       "a smaller one on a CPU)")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for rollouts (R1's RL: 1.0)")
    top_p: float = Field(1.0, gt=0, le=1, description="Top-p for rollouts")
    lr: float = Field(3e-6, gt=0, description="Learning rate (R1's RL: 3e-6)")
    beta: float = Field(0.001, ge=0, description="KL coefficient (R1: 0.001; 0 drops the reference model, as DAPO)")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="dapo: token-level normalisation over the batch (DAPO); grpo: per-sequence (the "
        "original GRPO); dr_grpo: Dr. GRPO's constant normaliser")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the group's reward std (GRPO), the batch's, or not (Dr. GRPO)")
    epsilon: float = Field(0.2, gt=0, description="Lower clip range")
    epsilon_high: float = Field(0.28, gt=0, description="Upper clip range (DAPO's clip-higher; R1 does not say)")
    num_iterations: int = Field(1, ge=1, description="Optimisation passes per generated batch (GRPO's mu)")
    mask_truncated_completions: bool = Field(True, description="Leave completions cut off at the limit out of "
                                             "the loss (DAPO)")
    epochs: float = Field(1.0, gt=0, description="Passes over the prompts when max_steps is unset")
    use_vllm: bool = Field(False, description="Generate rollouts with vLLM (GPU)")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="colocate: vLLM in the training processes, asleep while they train; server: "
        "`trl vllm-serve` on other GPUs (multi-node)")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate: vLLM's share of the GPU")
    vllm_server_base_url: str | None = Field(None, description="server: the URL of `trl vllm-serve`")

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, v: str | None) -> str | None:
        return check_path_name(v)

    @model_validator(mode="after")
    def _batch_holds_whole_groups(self) -> GrpoConfig:
        per_step = (self.batch_size or self.num_generations) * self.grad_accum
        if per_step % self.num_generations:
            raise ValueError(f"batch_size × grad_accum ({per_step}) must be a multiple of num_generations "
                             f"({self.num_generations}): every prompt's group is scored together")
        if not self.rewards.active():
            raise ValueError("every reward has weight 0: give at least one (rewards.accuracy.weight, ...)")
        return self


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

    from ..grpo import output_dir

    return train(KIND, Result, cfg, ctx, here, output_dir(cfg))


def in_pipeline(cfg: GrpoConfig, ctx: RunContext) -> Result:
    from ..grpo import output_dir

    return train_in_pipeline(KIND, Result, cfg, ctx, output_dir(cfg))
