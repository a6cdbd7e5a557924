"""`factory distill RUN_DIR --student PRESET`: SFT of a student on the kept traces, with TRL's SFTTrainer.

What is added to TRL: the loss-mask check and the overlong-sample count before the model is even loaded
(train/sft_data.py), the samples tokenised once into a memory-mapped file every rank shares, the end of turn as
EOS (a student from a base model stops), a NaN/inf stop, checkpoints marked complete only once fully written
(resume never picks a torn one), train_metrics.jsonl with tokens/s, a rich progress bar, and a loss-curve PNG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from factory.config.stages import DistillConfig
from factory.core.chat_templates import r1_template
from factory.core.context import DIRECT, RunContext
from factory.core.errors import FactoryError
from factory.core.jsonfiles import write_json_atomic
from factory.storage.rundir import write_resolved_config

from . import context
from .batching import bucket_order, use_packing
from .checkpoints import check_disk, last_complete_checkpoint, read_metrics, save_final
from .devices import Devices, detect, device_arguments, model_init_kwargs
from .mixture import stream_items
from .sft_data import DataReport, load_samples, stop_at_end_of_turn, write_samples
from .students import Settings, model_path, output_dir, resolve_settings
from .trl_args import compose

DATA = "data"  # the tokenised samples under the student's output directory


def run(cfg: DistillConfig, ctx: RunContext = DIRECT) -> dict[str, Any]:
    """Every process of a distributed launch runs this; only the main one writes the run's files."""
    from accelerate import PartialState

    dev = detect(cfg.precision)
    state = PartialState(cpu=not dev.cuda)  # cpu: torchrun processes then join over gloo
    s = resolve_settings(cfg)
    preset = s.preset
    run_dir = Path(cfg.run_dir)
    out = output_dir(cfg)
    path = base = model_path(preset)
    tokenizer, stop_ids = student_tokenizer(path, preset)
    check_disk(path, out, cfg.save_total_limit, cfg.lora)
    mixture: list[dict[str, Any]] = []
    with state.main_process_first():  # the main process tokenises once; the other ranks map its file
        if state.is_main_process:
            _write_data(cfg, tokenizer, s.max_length, out, mixture)
        data, report = load_samples(out / DATA, cfg.seed)
    with state.main_process_first():  # the main process moves torn checkpoints aside before the others look
        resume_from = last_complete_checkpoint(out, move_torn=state.is_main_process) if cfg.resume else None
        path, context_record = context.prepare(path, s.max_position_embeddings, s.rope_theta, report.longest,
                                               out, write=state.is_main_process)
    tally: dict[str, int] = {}
    trainer = build_trainer(cfg, s, path, tokenizer, data, out, report, tally, dev)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = save_final(trainer, tokenizer, path, out, cfg.lora, stop_ids)
    summary = {"student": preset.name, "model": base, "output": str(final), "data": report.to_json(),
               "steps": trainer.state.global_step, "resumed_from": str(resume_from) if resume_from else None,
               "final_loss": _last_loss(out / "train_metrics.jsonl"),
               "packing": use_packing(cfg.packing, dev.flash_attn),
               "processes": state.num_processes, "distributed": trainer.accelerator.distributed_type.value,
               "context": context_record, "mixture": mixture, "stops_at": tokenizer.eos_token,
               "nonpad_share": round(tally["real"] / tally["tokens"], 4) if tally.get("tokens") else None}
    if state.is_main_process:
        _plot_loss(out / "train_metrics.jsonl", out / "loss.png")
        write_resolved_config(run_dir, "distill", cfg, ctx, {"summary": summary})
        write_json_atomic(out / "distill_summary.json", summary)
    state.wait_for_everyone()
    return summary


def _write_data(cfg: DistillConfig, tokenizer, max_length: int, out: Path, mixture: list) -> None:
    """The samples on disk; on bad data (a FactoryError) nothing is left behind that was not there before."""
    import shutil

    made = out if not out.exists() else out / DATA  # the outermost directory this writes into being
    while not made.parent.exists():
        made = made.parent
    try:
        write_samples(stream_items(cfg, mixture), tokenizer, max_length, out / DATA, show=cfg.progress)
    except FactoryError:
        shutil.rmtree(made, ignore_errors=True)
        raise


def student_tokenizer(path: str, preset) -> tuple[Any, list[int]]:
    """The student's tokenizer as it is trained and saved: the R1-style template, and its end of turn as EOS;
    with the token ids generation stops at."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    # R1-distill style (no default system prompt, <think> kept in the assistant turn): trained on and saved with
    # the student, so that whatever serves it later renders prompts the way it was trained
    template = preset.chat_template or r1_template(tokenizer)
    if template:
        tokenizer.chat_template = template
    if not tokenizer.chat_template:
        raise FactoryError(f"{path}: the tokenizer has no chat template and factory knows no R1-style template "
                           "for its family (set chat_template in a preset)")
    return tokenizer, stop_at_end_of_turn(tokenizer)


def sft_arguments(cfg: DistillConfig, s: Settings, out: Path, dev: Devices) -> dict[str, Any]:
    """TRL's SFTConfig fields for this run on these devices."""
    packing = use_packing(cfg.packing, dev.flash_attn)
    # Without packing the dataset comes in length-bucket order, every epoch laid out (bucket_order): one
    # sequential pass over it is the run, so the trainer's epoch count is the share of it to train.
    epochs = s.epochs if packing else s.epochs / math.ceil(s.epochs)
    return dict(
        output_dir=str(out), learning_rate=s.lr, num_train_epochs=epochs, max_steps=cfg.max_steps or -1,
        train_sampling_strategy="random" if packing else "sequential",
        per_device_train_batch_size=s.batch_size, gradient_accumulation_steps=s.grad_accum,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="cosine", logging_steps=1, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed,
        gradient_checkpointing=cfg.gradient_checkpointing, report_to=[], disable_tqdm=True,
        # non-reentrant checkpointing: the variant FSDP and DDP support (the reentrant one breaks on FSDP2)
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        # Overlong samples were dropped and counted: max_length is only the packed row's size, never a cut.
        max_length=s.max_length if packing else None, packing=packing, packing_strategy="bfd",
        use_liger_kernel=dev.liger, include_num_input_tokens_seen="non_padding",
        model_init_kwargs=model_init_kwargs(dev), **device_arguments(dev))


def build_trainer(cfg: DistillConfig, s: Settings, path: str, tokenizer, data, out: Path,
                  report: DataReport, tally: dict, dev: Devices | None = None):
    """The configured trainer (TRL's SFTTrainer with the factory's sampler, callbacks and settings), not started;
    `tally` collects the real and padded token counts of every batch."""
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig

    from .callbacks import CompleteMarker, MetricsAndGuard
    from .trainer import FactorySFTTrainer

    dev = dev or detect(cfg.precision)
    args = SFTConfig(**compose(sft_arguments(cfg, s, out, dev), cfg.trl, SFTConfig, "distill"))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=s.preset.lora_targets,
                                 task_type="CAUSAL_LM")
    if isinstance(data, dict):  # samples held in memory (benchmarks)
        from datasets import Dataset

        data = Dataset.from_dict(data)
    laps = 1
    if not args.packing:  # one global batch per bucket: accelerate deals its per-device slices to the processes
        global_batch = args.per_device_train_batch_size * args.world_size
        data = data.select(bucket_order(report.lengths, global_batch, cfg.seed, s.epochs), keep_in_memory=True)
        laps = math.ceil(s.epochs)
    trainer = FactorySFTTrainer(
        model=path, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config,
        tally=tally, callbacks=[MetricsAndGuard(out / "train_metrics.jsonl", cfg.progress, tally, epochs=laps),
                                CompleteMarker(cfg)])
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


