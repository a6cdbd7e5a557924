"""`factory distill RUN_DIR --student PRESET` and a pipeline's `distill` stage: SFT of a student on the kept
traces (TRL's SFTTrainer, in train/sft.py), into RUN_DIR/student/PRESET (a named instance: RUN_DIR/student/NAME)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.config.stages import DistillConfig
from factory.core.context import DIRECT, RunContext
from factory.core.results import StageResult
from factory.stages.estimates import STUDENT, Cost, Estimate, EstimateContext, distill_estimate
from factory.storage.rundir import RunDir

from . import train, train_in_pipeline, trained_params

KIND, ORDER = "distill", 40
CLI_ARGUMENT = "run_dir"
CLI_OPTIONS = ("student", "max_steps", "resume", "lora", "progress", "launch", "num_processes")
INTERRUPTED = "the training processes were stopped; --resume continues from the last complete checkpoint"
Config = DistillConfig
MODEL_FIELDS = ("student",)


class Result(StageResult):
    """distill_summary.json: what was trained on what, for how long, and where the model is."""

    student: str
    model: str
    output: str
    data: dict[str, Any]  # the samples: counts, lengths, what was cut
    steps: int
    resumed_from: str | None = None
    final_loss: float | None = None
    packing: bool = False
    processes: int = 1
    distributed: str = "NO"
    context: dict[str, Any] | None = None
    mixture: list[dict[str, Any]] = []
    stops_at: str | None = None
    nonpad_share: float | None = None

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "final_loss": self.final_loss, "output": self.output,
                "nonpad_share": self.nonpad_share, "samples": self.data.get("samples")}

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        return f"{s.get('samples')} samples, {s.get('steps')} steps, final loss {s.get('final_loss')}"


def resolve(cfg: DistillConfig) -> DistillConfig:
    return cfg  # the preset's settings (epochs, lr, max_length) are train.students.resolve_settings'


def trained_model(cfg: DistillConfig) -> Path:
    from ..students import final_dir

    return final_dir(cfg)


def default_output(run_dir: Path, name: str) -> Path:
    return RunDir(run_dir).student(name)


def up_to_date(cfg: DistillConfig) -> bool:
    return (trained_model(cfg) / "config.json").exists()


def estimate(cfg: DistillConfig, ctx: EstimateContext) -> Estimate:
    from ..students import resolve_settings

    s = resolve_settings(cfg)
    params = trained_params("student", cfg.student, ctx)
    ctx.trained[STUDENT] = params  # `student` in the stages after this one means this model
    what = f"{cfg.student}, epochs {s.epochs}, lr {s.lr}, max_length {s.max_length}" + (", LoRA" if cfg.lora else "")
    if s.max_position_embeddings:
        what += f"; context extended to {s.max_position_embeddings:,} positions" + (
            f", rope_theta {s.rope_theta:,.0f}" if s.rope_theta else "")
    if cfg.mix:
        what += "; mixture: " + ", ".join(
            f"{m.source} ({'reasoning' if m.reasoning else 'non-reasoning'}"
            + (f", {m.count:,}" if m.count else f", ×{m.weight}" if m.weight else "") + ")" for m in cfg.mix)
    cost = distill_estimate(cfg, ctx.plan, ctx.upstream, s.epochs, params, s.max_length)
    return Estimate(what=what, cost=Cost(**cost), params_b=params)


def run(cfg: DistillConfig, ctx: RunContext = DIRECT) -> Result:
    """In this process (torch and TRL load here), or with `launch`, in processes of its own."""
    def here(c: Any, x: RunContext) -> dict[str, Any]:
        from .. import sft

        return sft.run(c, x)

    from ..students import output_dir

    return train(KIND, Result, cfg, ctx, here, output_dir(cfg))


def in_pipeline(cfg: DistillConfig, ctx: RunContext) -> Result:
    from ..students import output_dir

    return train_in_pipeline(KIND, Result, cfg, ctx, output_dir(cfg))
