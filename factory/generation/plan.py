"""Generation as a library: the plan (each prompt's messages and the cache key of each sample), the requests for
the samples the cache lacks, and the trace each sample becomes. `factory generate` and `factory eval` both use it
with their `GenerationSettings`; an executor (factory/executors) buys the missing samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ..config.stages import GenerationSettings
from ..config.teacher import DEFAULT_BASE_URL, TeacherConfig
from ..core.redact import redact_text
from ..storage.cache import sample_key, sampling_column
from ..storage.model_content import model_content
from ..storage.records import Prompt, Trace
from ..teachers import Completion, Request
from ..teachers.reasoning import split_reasoning
from ..teachers.template import build_messages

CACHE_FIELDS = ("text", "teacher_model", "engine", "sampling", "created_at")  # what make_trace reads


def sampling_key(cfg: GenerationSettings) -> dict[str, Any]:
    """The settings that change what the teacher writes (and so the cache key); n is not one of them."""
    s = cfg.sampling
    return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
            "extra_body": cfg.teacher.extra_body}


def model_key(teacher: TeacherConfig) -> dict[str, str]:
    """The model's part of a sample's cache key: its name; for a local directory its content too, so new weights
    at the same path are sampled afresh; for a server, the endpoint that serves it (`cache_identity`)."""
    content = model_content(teacher.model)
    key = {"model": teacher.model} if content is None else {"model": teacher.model, "model_content": content}
    if teacher.engine == "openai" and teacher.cache_identity == "endpoint":
        key["endpoint"] = endpoint(teacher.base_url)
    return key


def endpoint(base_url: str | None) -> str:
    """host[:port]/path of a server URL: no scheme, credentials or query (a key in a URL must not name a cache
    entry); the SDK's default when none is set."""
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    return host + (parts.path.rstrip("/") or "")


class Plan:
    """For each prompt: its messages and the cache key of each sample index, computed as it is iterated (a
    million-sample plan is never held as a list of keys). `n` samples per prompt, or `counts[prompt_id]` where
    set (adaptive sampling decides each prompt's count round by round)."""

    def __init__(self, cfg: GenerationSettings, prompts: list[Prompt], n: int | None = None):
        self.cfg, self.prompts, self.sampling = cfg, prompts, sampling_key(cfg)
        self.model = model_key(cfg.teacher)
        self.n = n or cfg.sampling.n
        self.counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.prompts)

    def count(self, prompt: Prompt) -> int:
        return self.counts.get(prompt.prompt_id, self.n)

    def samples(self) -> int:
        if not self.counts:
            return len(self.prompts) * self.n
        return sum(self.count(p) for p in self.prompts)

    def messages(self, prompt: Prompt) -> list[dict]:
        return build_messages(prompt, self.cfg.template)

    def keys(self, prompt: Prompt, messages: list[dict], count: int) -> list[str]:
        return [sample_key({"prompt_id": prompt.prompt_id, "messages": messages, **self.model,
                            "sampling": self.sampling, "sample_index": i}) for i in range(count)]

    def __iter__(self) -> Iterator[tuple[Prompt, list[dict], list[str]]]:
        return self.over(self.prompts)

    def over(self, prompts: list[Prompt]) -> Iterator[tuple[Prompt, list[dict], list[str]]]:
        """The plan of these prompts only (adaptive sampling's round)."""
        for p in prompts:
            messages = self.messages(p)
            yield p, messages, self.keys(p, messages, self.count(p))


def plan(cfg: GenerationSettings, prompts: list[Prompt], n: int | None = None) -> Plan:
    return Plan(cfg, prompts, n)


def missing_requests(work: Plan, cache) -> Iterator[Request]:
    """One request per prompt with samples the cache lacks, made as the teacher asks for it."""
    for prompt, messages, keys in work:
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            yield Request(prompt=prompt, messages=messages, sample_indices=missing, keys=keys)


def usage_report(cfg: GenerationSettings, usage, seconds: float) -> dict[str, Any]:
    out = {"http_requests": usage.requests, "retries": usage.retries, "failures_by_class": dict(usage.failures),
           "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
           "generation_seconds": round(seconds, 2),
           "completion_tokens_per_s": round(usage.completion_tokens / max(seconds, 1e-9), 1),
           **{k: getattr(usage, k) for k in ("first_token_s", "first_sample_s")
              if getattr(usage, k, None) is not None}}  # a local engine's: how long nothing moved
    prices = cfg.teacher.prices
    if prices:
        discount = prices.batch_discount if cfg.teacher.batch else 1.0  # the batch API's price
        out["cost_usd"] = round(discount * (usage.prompt_tokens * prices.input_per_mtok
                                            + usage.completion_tokens * prices.output_per_mtok) / 1e6, 6)
    return out


def make_trace(cfg: GenerationSettings, prompt: Prompt, messages: list[dict], index: int, rec: dict | None,
               err: Completion | None) -> Trace:
    """One sample as a trace: from its cache record, or (none) an error row naming why it is missing."""
    base = dict(prompt=prompt, sample_index=index, messages=json.dumps(messages, ensure_ascii=False))
    if rec is None:
        error = redact_text(err.error) if err else "missing: the sample is not in the cache (rerun to generate it)"
        return Trace(**base, teacher_model=cfg.teacher.model, engine=cfg.teacher.engine,
                     sampling=sampling_column(sampling_key(cfg)), error=error)
    reasoning, answer, source = split_reasoning(rec["text"], rec.get("reasoning_content"), cfg.reasoning.untagged)
    return Trace(**base, teacher_model=rec["teacher_model"], engine=rec["engine"],
                 sampling=sampling_column(rec["sampling"]), reasoning=reasoning, answer=answer,
                 raw_completion=rec["text"], reasoning_source=source, finish_reason=rec.get("finish_reason"),
                 truncated=rec.get("finish_reason") == "length", prompt_tokens=rec.get("prompt_tokens"),
                 completion_tokens=rec.get("completion_tokens"), latency_s=rec.get("latency_s"),
                 created_at=datetime.fromisoformat(rec["created_at"]))
