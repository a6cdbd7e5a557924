"""Small stand-ins for tests and benchmarks: a random tiny Llama with the bundled tokenizer, and kept traces in
the shape `factory filter` writes. One copy of each, so tests and bench/ measure the same things."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from factory.storage.records import FILTERED_SCHEMA, Prompt, Trace
from factory.storage.rundir import RunDir
from factory.storage.shards import write_shards

TINY_POSITIONS = 4096


def build_tiny_model(out: Path, tokenizer_dir: str | Path, max_positions: int = TINY_POSITIONS, hidden: int = 64,
                     heads: int = 4) -> Path:
    """A random 2-layer Llama (hidden 64) with the tokenizer and chat template of `tokenizer_dir`, saved to `out`.
    (vLLM's CPU attention needs a head size of 32 or more: hidden 128 with 2 heads for a model it serves.)"""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                      max_position_embeddings=max_positions,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    shown = hf_logging.is_progress_bar_enabled()  # built inside a command (`--student tiny`) or a test whose
    hf_logging.disable_progress_bar()  # stderr is read: no "Writing model shards" bar before its one-line error
    try:
        LlamaForCausalLM(cfg).save_pretrained(out)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    tok.save_pretrained(out)
    return out


def base_like_tokenizer(out: Path) -> Path:
    """The bundled Qwen tokenizer as a base model ships it (Qwen2.5-Math-7B): EOS `<|endoftext|>`, no chat
    template; `<|im_start|>` and `<|im_end|>` are in its vocabulary as added tokens."""
    from transformers import AutoTokenizer

    from factory.storage.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("qwen2.5-coder-0.5b"))
    tok.eos_token = "<|endoftext|>"
    tok.chat_template = None
    tok.save_pretrained(out)
    return out


def kept_row(i: int, reasoning: str, source: str = "synthetic") -> dict:
    """Kept trace `i`: "What is i + i?" with the given reasoning and the boxed answer, in FILTERED_SCHEMA."""
    p = Prompt(source=source, task="math", problem=f"What is {i} + {i}?", reference_answer=str(2 * i))
    messages = [{"role": "user", "content": f"{p.problem}\n\nPlease reason step by step."}]
    row = Trace(prompt=p, sample_index=0, teacher_model=source, engine="hf", sampling="{}",
                messages=json.dumps(messages), reasoning=reasoning, answer=f"The answer is \\boxed{{{2 * i}}}.",
                raw_completion="x", reasoning_source="think_tags", finish_reason="stop").to_row()
    row.update(kept=True, reject_reason=None, verdicts="{}", pass_rate=1.0)
    return row


def write_kept(run_dir: Path, n: int, reasoning: Callable[[int], str], source: str = "synthetic") -> Path:
    """A run directory holding `n` kept traces (filtered/kept), as `factory filter` writes them."""
    write_shards(RunDir(run_dir).kept, [kept_row(i, reasoning(i), source) for i in range(n)], FILTERED_SCHEMA)
    return Path(run_dir)
