"""`factory grpo`'s config: the prompts, the rewards (the filters, weighted) and TRL's GRPOTrainer settings.

Defaults follow DeepSeek-R1's RL recipe where it states a number (16 samples per question, temperature 1.0,
learning rate 3e-6, KL coefficient 0.001, 32,768-token completions) and DAPO where R1 is silent or where
TRL's current practice follows DAPO (token-level loss `dapo`, clip-higher 0.28, truncated completions masked
out of the loss). Every departure from R1 is said in its field's help.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .filter import CorrectnessParams, FormatParams, LanguageParams
from .stages import PromptsConfig, TemplateConfig, TrainingSettings, check_path_name
from .strict import Strict


class AccuracyReward(Strict):
    weight: float = Field(1.0, ge=0, description="Weight (0: off). 1 when the correctness filter passes, else 0")
    correctness: CorrectnessParams = Field(default_factory=CorrectnessParams,
                                           description="The correctness filter's settings (math-verify, gym, sandbox)")


class FormatReward(Strict):
    weight: float = Field(1.0, ge=0, description="Weight (0: off). 1 when the format filter passes: reasoning in "
                          "<think></think>, then a non-empty answer")
    format: FormatParams = Field(default_factory=lambda: FormatParams(require_think_tags=True),
                                 description="The format filter's settings (answer_tags=true: the answer in "
                                 "<answer></answer>, as the R1-Zero template asks)")


class LanguageReward(Strict):
    weight: float = Field(0.0, ge=0, description="Weight (0: off; R1's reasoning RL used it). The share of the "
                          "reasoning in the target language, as the language filter measures it")
    language: LanguageParams = Field(default_factory=LanguageParams, description="The language filter's settings")


class LengthReward(Strict):
    weight: float = Field(0.0, ge=0, description="Weight (0: off). DAPO's soft overlong penalty: 0 up to "
                          "max_completion_length - buffer, then down linearly to -1 at the limit")
    buffer: int = Field(512, ge=1, description="Tokens before the limit where the penalty begins")


class RewardsConfig(Strict):
    accuracy: AccuracyReward = Field(default_factory=AccuracyReward)
    format: FormatReward = Field(default_factory=FormatReward)
    language: LanguageReward = Field(default_factory=LanguageReward)
    length: LengthReward = Field(default_factory=LengthReward)
    workers: int = Field(0, ge=0, description="Processes scoring completions (0: one per core; math-verify's "
                         "timeout needs a process of its own)")
    timeout_s: float = Field(120.0, gt=0, description="Longest a worker may spend on one batch of completions; past "
                             "it, the batch's rewards are 0 (accuracy) and the worker is replaced")
    control: Literal["none", "shuffled"] = Field(
        "none", description="shuffled: the control arm of an RL claim (Spurious Rewards, 2025, saw Qwen models "
        "gain from random rewards). Every reward is scored as usual, then shuffled among the completions of the "
        "same prompt in the step: the same values, mean and spread, but no word on which completion earned them. "
        "rollouts.jsonl keeps the true ones")

    def active(self) -> dict[str, float]:
        return {name: getattr(self, name).weight for name in ("accuracy", "format", "language", "length")
                if getattr(self, name).weight > 0}


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
