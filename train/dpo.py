"""`factory prefer RUN_DIR --student PATH`: preference training on the pairs (`factory pairs`) with TRL's
DPOTrainer, from a distilled student, with that student as the reference model.

What is added to TRL, as for distill: the template checks before the model is loaded (the prompt renders as a
prefix of each conversation, so TRL's prompt/completion split holds; no prefilled <think>), pairs longer than
`max_length` dropped and counted rather than cut, the end of turn as EOS, checkpoints marked complete, a NaN/inf
stop, train_metrics.jsonl with the rewards, margins and accuracies of every step, and a plot of them.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.core.context import DIRECT, RunContext
from factory.core.errors import FactoryError
from factory.core.jsonfiles import write_json_atomic
from factory.storage.rundir import FINAL, RunDir, write_resolved_config
from factory.storage.shards import shard_files

from .checkpoints import check_disk, last_complete_checkpoint, read_metrics, save_final
from .devices import Devices, detect, device_arguments, model_init_kwargs
from .sft import student_tokenizer
from .students import model_path, resolve_student
from .trl_args import compose

if TYPE_CHECKING:  # the config lives with its stage module, which imports this one when it runs
    from .stages.prefer import PreferConfig

METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def output_dir(cfg: PreferConfig) -> Path:
    """RUN_DIR/prefer/NAME; NAME defaults to the student's (a checkpoint's .../NAME/final: NAME)."""
    student = Path(cfg.student)
    name = cfg.name or (student.parent.name if student.name == FINAL else resolve_student(cfg.student).name)
    return Path(cfg.output_dir or RunDir(cfg.run_dir).prefer(name))


def final_dir(cfg: PreferConfig) -> Path:
    return output_dir(cfg) / FINAL


def pairs_dir(cfg: PreferConfig) -> Path:
    return Path(cfg.pairs or RunDir(cfg.run_dir).pairs)


def run(cfg: PreferConfig, ctx: RunContext = DIRECT) -> dict[str, Any]:
    """Every process of a distributed launch runs this; only the main one writes the run's files."""
    from accelerate import PartialState

    dev = detect(cfg.precision)
    state = PartialState(cpu=not dev.cuda)
    preset = resolve_student(cfg.student)
    path = model_path(preset)
    out = output_dir(cfg)
    tokenizer, stop_ids = student_tokenizer(path, preset)
    data, report = load_pairs(pairs_dir(cfg), cfg.kinds, tokenizer, cfg.max_length)
    check_disk(path, out, cfg.save_total_limit, cfg.lora)
    with state.main_process_first():  # the main process moves torn checkpoints aside before the others look
        out.mkdir(parents=True, exist_ok=True)
        resume_from = last_complete_checkpoint(out, move_torn=state.is_main_process) if cfg.resume else None
    trainer = build_trainer(cfg, path, tokenizer, data, out, dev)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = save_final(trainer, tokenizer, path, out, cfg.lora, stop_ids)
    steps = [r for r in read_metrics(out / "train_metrics.jsonl") if "rewards/margins" in r]
    summary = {"student": cfg.student, "model": path, "output": str(final), "data": report,
               "steps": trainer.state.global_step, "resumed_from": str(resume_from) if resume_from else None,
               "loss_type": cfg.loss_type, "beta": cfg.beta, "first": _row(steps[:1]), "last": _row(steps[-1:]),
               "curve": [_row([r]) for r in steps],
               "processes": state.num_processes, "distributed": trainer.accelerator.distributed_type.value,
               "stops_at": tokenizer.eos_token}
    if state.is_main_process:
        plot_metrics(steps, out / "prefer.png")
        write_resolved_config(cfg.run_dir, "prefer", cfg, ctx, {"summary": summary})
        write_json_atomic(out / "prefer_summary.json", summary)
    state.wait_for_everyone()
    return summary


def load_pairs(pairs: Path, kinds: list[str], tokenizer, max_length: int) -> tuple[Any, dict[str, Any]]:
    """The pairs of the kinds asked for, as a datasets.Dataset of prompt/chosen/rejected; the template checked on
    the first pair, every pair's length counted, the ones longer than max_length dropped (never cut: a cut
    rejected side would teach the model that stopping mid-thought is what was wrong)."""
    from datasets import load_dataset

    data = load_dataset("parquet", data_files=shard_files(pairs), split="train")
    data = data.filter(lambda kind: kind in kinds, input_columns="kind")
    if not len(data):
        raise FactoryError(f"{pairs}: no pair of the kinds {', '.join(kinds)} (factory pairs makes them; "
                           "pairs/stats.json says why a prompt got none)")
    check_template(tokenizer, data[0], str(pairs))
    lengths = [max(pair) for pair in zip(_tokens(tokenizer, data, "chosen"), _tokens(tokenizer, data, "rejected"))]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    if not keep:
        raise FactoryError(f"{pairs}: every pair is longer than max_length ({max_length} tokens; the shortest is "
                           f"{min(lengths)}): raise max_length")
    kept = data.select(keep).select_columns(["prompt", "chosen", "rejected"])
    return kept, {"pairs": len(keep), "by_kind": dict(Counter(data.select(keep)["kind"])), "dropped_overlong": len(data) - len(keep),
                  "longest": max(lengths[i] for i in keep), "max_length": max_length}


def _tokens(tokenizer, data, side: str) -> list[int]:
    """Tokens of each prompt + side as the template renders it (one batched tokenizer call)."""
    texts = [tokenizer.apply_chat_template(p + s, tokenize=False) for p, s in zip(data["prompt"], data[side])]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_template(tokenizer, pair: dict[str, Any], where: str) -> None:
    """TRL splits prompt from completion by rendering the prompt alone: a template that renders it otherwise
    inside the whole conversation (or prefills <think>) would train on the wrong tokens."""
    prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True)
    if prompt.rstrip().endswith("<think>"):
        raise FactoryError(f"{tokenizer.name_or_path}: the chat template prefills <think>; each side would hold it "
                           "twice (use a template without the prefill)")
    for side in ("chosen", "rejected"):
        full = tokenizer.apply_chat_template(pair["prompt"] + pair[side], tokenize=False)
        if not full.startswith(prompt) or pair[side][0]["content"].strip() not in full[len(prompt):]:
            raise FactoryError(f"{where}: {tokenizer.name_or_path}'s chat template does not render the prompt as "
                               f"the start of the conversation, with the {side} turn after it: TRL would split "
                               "prompt and completion in the wrong place")


def dpo_arguments(cfg: PreferConfig, out: Path, dev: Devices) -> dict[str, Any]:
    """TRL's DPOConfig fields for this run on these devices."""
    return dict(
        output_dir=str(out), learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        beta=cfg.beta, loss_type=[cfg.loss_type], max_length=cfg.max_length, warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="cosine", logging_steps=1, save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, data_seed=cfg.seed, gradient_checkpointing=cfg.gradient_checkpointing, report_to=[],
        disable_tqdm=True, gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing
        else None, use_liger_kernel=dev.liger, model_init_kwargs=model_init_kwargs(dev), **device_arguments(dev))


def build_trainer(cfg: PreferConfig, path: str, tokenizer, data, out: Path, dev: Devices | None = None):
    """TRL's DPOTrainer from the factory's settings, not started. No ref_model: TRL makes the reference from the
    starting weights (with LoRA, the base with the adapter switched off)."""
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from .callbacks import CompleteMarker, MetricsAndGuard

    args = DPOConfig(**compose(dpo_arguments(cfg, out, dev or detect(cfg.precision)), cfg.trl, DPOConfig,
                               "prefer"))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, task_type="CAUSAL_LM",
                                 target_modules=resolve_student(cfg.student).lora_targets)
    trainer = DPOTrainer(model=path, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=peft_config,
                         callbacks=[MetricsAndGuard(out / "train_metrics.jsonl", cfg.progress, label="prefer"),
                                    CompleteMarker(cfg, "prefer_config.json")])
    trainer.remove_callback(PrinterCallback)
    return trainer


def _row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: rows[0][k] for k in ("step", *METRICS) if k in rows[0]} if rows else {}


def plot_metrics(rows: list[dict[str, Any]], png: Path) -> None:
    """Margins and accuracies per step: what a preference run is judged by at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    steps = [r["step"] for r in rows]
    for ax, keys, title in ((axes[0], ("loss",), "loss"),
                            (axes[1], ("rewards/chosen", "rewards/rejected", "rewards/margins"), "implicit rewards"),
                            (axes[2], ("rewards/accuracies",), "accuracy (chosen > rejected)")):
        for key in keys:
            ax.plot(steps, [r.get(key, math.nan) for r in rows], label=key.split("/")[-1])
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle("factory prefer")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
