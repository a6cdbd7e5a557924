"""`factory prefer RUN_DIR --student PATH` and a pipeline's `prefer` stage: preference training (TRL's DPOTrainer,
in train/dpo.py) on the run's pairs (`factory pairs`), from a distilled student that is also the reference model,
into RUN_DIR/prefer/NAME.

Defaults are TRL's DPO defaults (sigmoid loss, beta 0.1, learning rate 1e-6) where the R1 recipe, which has no
preference stage, says nothing; Light-R1 added one after SFT, on pairs it built by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from factory.config.stages import TrainingSettings, check_path_name
from factory.core.context import DIRECT, RunContext
from factory.core.results import StageResult
from factory.stages.estimates import Cost, Estimate, EstimateContext, training_cost
from factory.stages.pairs import KINDS, PairKind
from factory.storage.rundir import RunDir

from . import train, train_in_pipeline, trained_params

KIND, ORDER = "prefer", 45
CLI_ARGUMENT = "run_dir"
CLI_OPTIONS = ("student", "pairs", "loss_type", "beta", "max_steps", "resume", "lora", "progress", "launch",
               "num_processes")
INTERRUPTED = "the training processes were stopped; --resume continues from the last complete checkpoint"
MODEL_FIELDS = ("student",)
# TRL's DPO losses (trl.DPOConfig.loss_type): sigmoid is DPO, ipo IPO, apo_zero/apo_down APO, nca_pair NCA...
LossType = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                   "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


class PreferConfig(TrainingSettings):
    run_dir: str = Field("runs/default", description="Run directory holding pairs/ (outputs go to RUN_DIR/prefer/NAME)")
    student: str = Field("smollm2-135m", description="The model to train and the reference model: a distilled "
                         "student's checkpoint (in a pipeline: `student` or stage:NAME), a preset or a path")
    pairs: str | None = Field(None, description="The pairs' directory (default: RUN_DIR/pairs)")
    kinds: list[PairKind] = Field(default_factory=lambda: list(KINDS), description="Train on the pairs of these "
                                  "kinds only")
    name: str | None = Field(None, description="Output name under RUN_DIR/prefer (default: the student's)")
    loss_type: LossType = Field("sigmoid", description="TRL's DPO loss: sigmoid (DPO), ipo (IPO), apo_zero or "
                                "apo_down (APO), nca_pair (NCA), robust, hinge, ... (trl.DPOConfig.loss_type)")
    beta: float = Field(0.1, gt=0, description="How far the policy may move from the reference (TRL's default)")
    lr: float = Field(1e-6, gt=0, description="Learning rate (TRL's DPO default)")
    epochs: float = Field(1.0, gt=0, description="Passes over the pairs")
    batch_size: int = Field(2, ge=1, description="Pairs per device per micro-batch")
    grad_accum: int = Field(4, ge=1, description="Micro-batches per optimizer step")
    max_length: int = Field(4096, ge=8, description="Longest prompt + side in tokens; longer pairs are dropped and "
                            "counted, never cut")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Share of steps spent warming up the learning rate")

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, v: str | None) -> str | None:
        return check_path_name(v)


Config = PreferConfig


class Result(StageResult):
    """prefer_summary.json: what was trained on which pairs, its rewards at every step, where the model is."""

    student: str
    model: str
    output: str
    data: dict[str, Any]  # the pairs: used by kind, dropped as too long, the longest
    steps: int
    resumed_from: str | None = None
    loss_type: str
    beta: float
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    curve: list[dict[str, float]] = []  # every step's loss, rewards, margin and accuracy
    processes: int = 1
    distributed: str = "NO"
    stops_at: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "pairs": self.data.get("pairs"), "output": self.output,
                "margin": self.last.get("rewards/margins"), "accuracy": self.last.get("rewards/accuracies")}

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        return f"{s.get('pairs')} pairs, {s.get('steps')} steps, margin {s.get('margin')}, accuracy {s.get('accuracy')}"


def resolve(cfg: PreferConfig) -> PreferConfig:
    return cfg


def trained_model(cfg: PreferConfig) -> Path:
    from ..dpo import final_dir  # light: no torch at import

    return final_dir(cfg)


def default_output(run_dir: Path, name: str) -> Path:
    return RunDir(run_dir).prefer(name)


def up_to_date(cfg: PreferConfig) -> bool:
    return (trained_model(cfg) / "config.json").exists()


def estimate(cfg: PreferConfig, ctx: EstimateContext) -> Estimate:
    """The pairs, where factory pairs has counted them (else at most one per prompt and kind); each step runs the
    policy forward and backward (6·N per token) and the reference forward (2·N) over both sides."""
    from ..dpo import pairs_dir

    stats = pairs_dir(cfg) / "stats.json"
    by_kind = json.loads(stats.read_text())["by_kind"] if stats.exists() else {}
    pairs = sum(n for k, n in by_kind.items() if k in cfg.kinds) if stats.exists() else (
        ctx.upstream.prompts * len(cfg.kinds) if ctx.upstream.prompts else None)
    params = trained_params("student", cfg.student, ctx)
    what = (f"{cfg.student}: {cfg.loss_type} loss, beta {cfg.beta}, lr {cfg.lr}, on "
            f"{'?' if pairs is None else f'{pairs:,}' if stats.exists() else f'at most {pairs:,}'} pairs "
            f"({', '.join(cfg.kinds)})" + ("; LoRA" if cfg.lora else ""))
    if pairs is None:
        return Estimate(what=what, params_b=params)
    side = ctx.plan.mean_prompt_tokens + ctx.plan.completion_tokens(cfg.max_length)
    tokens = int(pairs * 2 * min(side, cfg.max_length) * cfg.epochs * 8 / 6)  # the reference's forward: 2N of 6N
    return Estimate(what=what, cost=Cost(**training_cost(tokens, params, ctx.plan)), params_b=params)


def run(cfg: PreferConfig, ctx: RunContext = DIRECT) -> Result:
    """In this process (torch and TRL load here), or with `launch`, in processes of its own."""
    from ..dpo import output_dir

    def here(c: Any, x: RunContext) -> dict[str, Any]:
        from .. import dpo

        return dpo.run(c, x)

    return train(KIND, Result, cfg, ctx, here, output_dir(cfg))


def in_pipeline(cfg: PreferConfig, ctx: RunContext) -> Result:
    from ..dpo import output_dir

    return train_in_pipeline(KIND, Result, cfg, ctx, output_dir(cfg))
