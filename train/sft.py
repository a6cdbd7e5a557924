"""`factory distill RUN_DIR --student PRESET`: SFT of a student on the kept traces, with TRL's SFTTrainer.

What is added to TRL: the loss-mask check and the overlong-sample count before the model is even loaded
(train/sft_data.py), a NaN/inf stop, checkpoints marked complete only once fully written (resume never picks a
torn one), train_metrics.jsonl with tokens/s, a rich progress bar, and a loss-curve PNG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from factory.chat_templates import r1_template
from factory.config import DistillConfig
from factory.rundir import write_resolved_config
from factory.shards import write_json_atomic

from . import context
from .batching import use_packing
from .checkpoints import check_disk, last_complete_checkpoint, read_metrics, save_final
from .mixture import load_items
from .sft_data import DataReport, build_samples
from .students import Settings, model_path, output_dir, resolve_settings


def run(cfg: DistillConfig) -> dict[str, Any]:
    """Every process of a distributed launch runs this; only the main one writes the run's files."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # cpu: torchrun processes then join over gloo
    s = resolve_settings(cfg)
    preset = s.preset
    run_dir = Path(cfg.run_dir)
    out = output_dir(cfg)
    path = base = model_path(preset)
    tokenizer = _tokenizer(path, preset)
    show = cfg.progress and state.is_main_process
    items, mixture = load_items(cfg)
    data, report = build_samples(items, tokenizer, s.max_length, show=show)
    check_disk(path, out, cfg.save_total_limit, cfg.lora)
    with state.main_process_first():  # the main process moves torn checkpoints aside before the others look
        out.mkdir(parents=True, exist_ok=True)
        resume_from = last_complete_checkpoint(out, move_torn=state.is_main_process) if cfg.resume else None
        path, context_record = context.prepare(path, s.max_position_embeddings, s.rope_theta, report.longest,
                                               out, write=state.is_main_process)
    tally: dict[str, int] = {}
    trainer = build_trainer(cfg, s, path, tokenizer, data, out, report, tally)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = save_final(trainer, tokenizer, path, out, cfg.lora)
    summary = {"student": preset.name, "model": base, "output": str(final), "data": report.to_json(),
               "steps": trainer.state.global_step, "resumed_from": str(resume_from) if resume_from else None,
               "final_loss": _last_loss(out / "train_metrics.jsonl"), "packing": use_packing(cfg.packing),
               "processes": state.num_processes, "context": context_record, "mixture": mixture,
               "nonpad_share": round(tally["real"] / tally["tokens"], 4) if tally.get("tokens") else None}
    if state.is_main_process:
        _plot_loss(out / "train_metrics.jsonl", out / "loss.png")
        write_resolved_config(run_dir, "distill", cfg, {"summary": summary})
        write_json_atomic(out / "distill_summary.json", summary)
    state.wait_for_everyone()
    return summary


def _tokenizer(path: str, preset):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    # R1-distill style (no default system prompt, <think> kept in the assistant turn): trained on and saved with
    # the student, so that whatever serves it later renders prompts the way it was trained
    template = preset.chat_template or r1_template(tokenizer)
    if template:
        tokenizer.chat_template = template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_trainer(cfg: DistillConfig, s: Settings, path: str, tokenizer, data: dict[str, list], out: Path,
                  report: DataReport, tally: dict):
    """The configured trainer (TRL's SFTTrainer with the factory's sampler, callbacks and settings), not started;
    `tally` collects the real and padded token counts of every batch."""
    import importlib.util

    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig

    from .batching import flash_attention_available, use_packing
    from .callbacks import CompleteMarker, MetricsAndGuard
    from .trainer import FactorySFTTrainer

    packing = use_packing(cfg.packing)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args = SFTConfig(
        output_dir=str(out), learning_rate=s.lr, num_train_epochs=s.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=s.batch_size, gradient_accumulation_steps=s.grad_accum,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="cosine", logging_steps=1, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed, bf16=bf16,
        gradient_checkpointing=cfg.gradient_checkpointing, report_to=[], disable_tqdm=True,
        # Overlong samples were dropped and counted: max_length is only the packed row's size, never a cut.
        max_length=s.max_length if packing else None, packing=packing, packing_strategy="bfd",
        use_liger_kernel=torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None,
        include_num_input_tokens_seen="non_padding", dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available())
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=s.preset.lora_targets,
                                 task_type="CAUSAL_LM")
    args.model_init_kwargs = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    if flash_attention_available():
        args.model_init_kwargs.attn_implementation = "flash_attention_2"
    trainer = FactorySFTTrainer(
        model=path, args=args, train_dataset=Dataset.from_dict(data), processing_class=tokenizer,
        peft_config=peft_config, bucket_lengths=None if packing else report.lengths, tally=tally,
        callbacks=[MetricsAndGuard(out / "train_metrics.jsonl", cfg.progress, tally), CompleteMarker(cfg)])
    trainer.remove_callback(PrinterCallback)  # our bar and train_metrics.jsonl say it, without a dict per step
    return trainer


def _last_loss(metrics: Path) -> float | None:
    losses = [r["loss"] for r in read_metrics(metrics) if "loss" in r]
    return losses[-1] if losses else None


def _plot_loss(metrics: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics) if "loss" in r and math.isfinite(r["loss"])]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("factory distill")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


