"""Trainer callbacks: metrics + NaN guard + progress, and the COMPLETE marker on finished checkpoints."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from factory.config.loader import public_dump
from factory.core.errors import FactoryError
from factory.core.jsonfiles import write_json_atomic


class MetricsAndGuard(TrainerCallback):
    """Appends every log to a metrics JSONL (train_metrics.jsonl, rl_metrics.jsonl) with tokens/s; stops the run on
    a NaN/inf loss."""

    def __init__(self, path: Path, progress: bool, tally: dict | None = None, label: str = "distill",
                 epochs: int = 1, rollouts_ready: Callable[[], float | None] | None = None):
        self.path, self.progress_enabled, self.label = path, progress, label
        # GRPO: when the step's rollouts were ready (perf_counter), so a step row splits into generation and update
        self.rollouts_ready, self.step_began = rollouts_ready, None
        self.epochs = epochs  # epochs laid out in the dataset's order: the trainer counts them as one
        self.tally = tally if tally is not None else {}  # filled by FactorySFTTrainer.compute_loss
        self.started = time.perf_counter()
        self.bar = self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(stderr=True),
                            disable=not (self.progress_enabled and state.is_world_process_zero))
        self.task = self.bar.add_task(self.label, total=state.max_steps, completed=state.global_step, info="")
        self.bar.start()
        self.started = time.perf_counter()
        self.first_step = state.global_step

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_began = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FactoryError(f"training loss is {loss} at step {state.global_step}: stopping instead of training "
                               "on garbage (lower the learning rate, check the data, or resume from a checkpoint)")
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        tokens = state.num_input_tokens_seen or 0
        epoch = None if state.epoch is None else round(state.epoch * self.epochs, 4)
        row = {"step": state.global_step, **logs, "epoch": epoch, "elapsed_s": round(elapsed, 2),
               "tokens_seen": tokens, "tokens_per_s": round(tokens / elapsed, 1)}
        row.update(self._phases(logs))
        if self.tally:  # SFT's batches count their real and padded tokens
            row["trainable_tokens_per_s"] = round(self.tally.get("trainable", 0) / elapsed, 1)
            row["nonpad_share"] = round(self.tally["real"] / self.tally["tokens"], 4) if self.tally.get("tokens") else None
        if state.is_world_process_zero:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.bar is not None and loss is not None:
            reward = f"reward {logs['reward']:.3f}  " if "reward" in logs else ""
            self.bar.update(self.task, completed=state.global_step,
                            info=f"{reward}loss {loss:.4f}  {row['tokens_per_s']:,.0f} tok/s")

    def _phases(self, logs: dict) -> dict[str, float]:
        """A GRPO step row's seconds: the whole step, and generating its rollouts (the rest is scoring and the
        update: log-probabilities, loss and backward)."""
        ready = self.rollouts_ready() if self.rollouts_ready else None
        if "reward" not in logs or ready is None or self.step_began is None or ready < self.step_began:
            return {}
        return {"step_s": round(time.perf_counter() - self.step_began, 2),
                "generate_s": round(ready - self.step_began, 2)}

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)
            self.bar.stop()


class CompleteMarker(TrainerCallback):
    """transformers writes checkpoint-N in place; the marker, written after the save returns, is what makes a
    checkpoint complete (with the resolved config beside it)."""

    def __init__(self, cfg, config_file: str = "distill_config.json"):
        self.cfg, self.config_file = cfg, config_file

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                write_json_atomic(ckpt / self.config_file, public_dump(self.cfg))
                (ckpt / "COMPLETE").write_text(f"{state.global_step}\n")
