"""Checkpoints shared by distill and grpo: a disk check before training, COMPLETE markers that make a checkpoint
resumable only once fully written (torn ones are moved aside), and the final model saved as a standard
transformers checkpoint vLLM can serve (LoRA adapters merged); and the metrics log a run appends to."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from factory.core.errors import FactoryError
from factory.storage.model_content import write_record
from factory.storage.rundir import FINAL

COMPLETE = "COMPLETE"


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics JSONL (train_metrics.jsonl, rl_metrics.jsonl); none when it is not there yet."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def last_complete_checkpoint(out: Path, move_torn: bool = True) -> Path | None:
    """The newest checkpoint whose COMPLETE marker exists; torn ones (a crash mid-save) are moved aside."""
    done = []
    for ckpt in out.glob("checkpoint-*"):
        if (ckpt / COMPLETE).exists():
            done.append(ckpt)
        elif move_torn:
            shutil.move(str(ckpt), str(out / f"torn-{ckpt.name}-{int(time.time())}"))
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def check_disk(path: str, out: Path, save_total_limit: int, lora: bool) -> None:
    """Refuses to start a run whose checkpoints cannot fit: a full disk mid-save loses the step it was saving."""
    params = parameter_count(path)
    weights = params * 2  # bf16/fp16 safetensors
    per_ckpt = weights + params * 8 if not lora else int(weights * 0.02)  # + Adam moments (fp32)
    need = per_ckpt * (save_total_limit + 1) + weights * (2 if lora else 1)
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
        raise FactoryError(f"{out}: checkpoints of this {size}-parameter student need about "
                           f"{need / 1e9:.1f} GB free, {free / 1e9:.1f} GB are (lower save_total_limit, use --lora, "
                           "or set output_dir on a bigger disk)")


def parameter_count(path: str) -> int:
    """From the config alone, on the meta device: nothing is loaded."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    model.tie_weights()  # from_config on the meta device leaves tied embeddings untied: counted twice otherwise
    return sum(p.numel() for p in model.parameters())


def save_final(trainer, tokenizer, path: str, out: Path, lora: bool, stop_ids: list[int] | None = None) -> Path:
    """A standard transformers checkpoint vLLM can serve; with LoRA the adapter is kept beside the merged model.
    `stop_ids` (end of turn first) go into generation_config.json's eos_token_id, where vLLM and transformers
    look for the tokens that end an answer.

    Every process calls this (FSDP and ZeRO-3 gather the weights collectively); the main one writes, into
    final.tmp, renamed to final once complete.
    """
    acc = trainer.accelerator
    final, tmp = out / FINAL, out / f"{FINAL}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    if trainer.is_fsdp_enabled:
        acc.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(tmp / "adapter" if lora else tmp))
    if acc.is_main_process:
        if lora:
            _merge_adapter(path, tmp / "adapter", tmp, trainer.model.dtype)
        tokenizer.save_pretrained(tmp)
        if stop_ids:
            write_stop_ids(tmp, stop_ids)
        (tmp / "training_args.bin").unlink(missing_ok=True)
        write_record(tmp)  # its content hash: evals and generations key their caches by it, not by the path
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    acc.wait_for_everyone()
    return final


def write_stop_ids(model_dir: Path, stop_ids: list[int]) -> None:
    from transformers import AutoConfig, GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # the model wrote none
        gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
    gen.eos_token_id = stop_ids[0] if len(stop_ids) == 1 else list(stop_ids)
    gen.save_pretrained(model_dir)


def _merge_adapter(base_path: str, adapter: Path, dest: Path, dtype) -> None:
    """Reloads the base on CPU and merges there: works the same whatever sharded the adapter during training."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(dest, safe_serialization=True)
