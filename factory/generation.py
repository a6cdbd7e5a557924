"""Generation as a library: the plan (each prompt's messages and the cache key of each sample), the samples the
cache lacks (bought from a teacher, cached one by one as they finish), and the trace each sample becomes.
`factory generate` and `factory eval` both call it with their `GenerationSettings`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import orjson

from .cache import SampleCache, sample_key
from .config import GenerationSettings
from .model_content import model_content
from .progress import GenerationProgress
from .records import Prompt, Trace
from .redact import redact, redact_text
from .teachers import Completion, Request, make_teacher
from .teachers.reasoning import split_reasoning
from .teachers.template import build_messages

CACHE_FIELDS = ("text", "teacher_model", "engine", "sampling", "created_at")  # what make_trace reads


def sampling_key(cfg: GenerationSettings) -> dict[str, Any]:
    """The settings that change what the teacher writes (and so the cache key); n is not one of them."""
    s = cfg.sampling
    return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
            "extra_body": cfg.teacher.extra_body}


def model_key(model: str) -> dict[str, str]:
    """The model's part of a sample's cache key: its name, and for a local directory its content too, so new
    weights at the same path are sampled afresh (a name alone keys API models, as it always has)."""
    content = model_content(model)
    return {"model": model} if content is None else {"model": model, "model_content": content}


class Plan:
    """For each prompt: its messages and the cache key of each sample index, computed as it is iterated (a
    million-sample plan is never held as a list of keys)."""

    def __init__(self, cfg: GenerationSettings, prompts: list[Prompt]):
        self.cfg, self.prompts, self.sampling = cfg, prompts, sampling_key(cfg)
        self.model = model_key(cfg.teacher.model)

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[tuple[Prompt, list[dict], list[str]]]:
        for p in self.prompts:
            messages = build_messages(p, self.cfg.template)
            keys = [sample_key({"prompt_id": p.prompt_id, "messages": messages, **self.model,
                                "sampling": self.sampling, "sample_index": i}) for i in range(self.cfg.sampling.n)]
            yield p, messages, keys


def plan(cfg: GenerationSettings, prompts: list[Prompt]) -> Plan:
    return Plan(cfg, prompts)


def generate_missing(cfg: GenerationSettings, work: Plan, cache: SampleCache) -> dict[str, Any]:
    """Requests every sample of the plan the cache lacks; each finished one is cached at once (failures are not:
    a rerun tries them again). Two streaming passes over the plan (one counts, one feeds the teacher as it has
    room), so memory holds the requests in flight, never a list of the plan. Returns the counts, usage and the
    failures by key (`errors`)."""
    total = len(work) * cfg.sampling.n
    todo = sum(k not in cache for _, _, keys in work for k in keys) if len(cache) else total
    report: dict[str, Any] = {"prompts": len(work), "samples": total, "cached": total - todo, "requested": todo,
                              "errors": {}}
    if not todo:
        return report
    if cfg.executor.kind == "ray":
        return _generate_on_ray(cfg, work, cache, report)
    teacher = make_teacher(cfg.teacher, cfg.sampling)
    errors: dict[str, Completion] = report["errors"]
    same = {"teacher_model": teacher.model, "engine": teacher.engine,
            "sampling": json.loads(sampling_column(sampling_key(cfg)))}  # the same for every sample
    gen_started = time.perf_counter()
    try:
        with GenerationProgress(report["requested"], teacher.usage, enabled=cfg.progress) as advance:
            def sink(req: Request, c: Completion) -> None:
                key = req.keys[c.sample_index]
                if c.error:
                    errors[key] = c  # not cached: a rerun tries it again
                else:
                    cache.put(key, cache_record(same, c))
                advance()
            teacher.generate(missing_requests(work, cache), sink)
    finally:
        teacher.close()
    report.update(_usage_report(cfg, teacher.usage, time.perf_counter() - gen_started))
    return report


def _generate_on_ray(cfg: GenerationSettings, work: Plan, cache: SampleCache, report: dict[str, Any]
                     ) -> dict[str, Any]:
    """The same, on a Ray cluster: actors write their own cache segments, which the driver then indexes."""
    from .ray_executor import generate_on_ray
    from .teachers import Usage

    if cfg.teacher.engine == "openai":
        from .teachers.openai_compat import preflight

        preflight(cfg.teacher)  # one line here, not one per actor
    usage, errors = Usage(), report["errors"]
    gen_started = time.perf_counter()
    with GenerationProgress(report["requested"], usage, enabled=cfg.progress) as advance:
        def on_result(key: str, error: str | None, error_class: str | None) -> None:
            if error:
                errors[key] = Completion(0, error=error, error_class=error_class)
            advance()
        try:
            generate_on_ray(cfg, missing_requests(work, cache), cache.root, usage, on_result)
        finally:
            cache.refresh()  # what the actors wrote, also when the run was cut short
    report.update(_usage_report(cfg, usage, time.perf_counter() - gen_started))
    return report


def missing_requests(work: Plan, cache) -> Iterator[Request]:
    """One request per prompt with samples the cache lacks, made as the teacher asks for it."""
    for prompt, messages, keys in work:
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            yield Request(prompt=prompt, messages=messages, sample_indices=missing, keys=keys)


def cache_record(same: dict[str, Any], c: Completion) -> dict[str, Any]:
    return {"text": c.text, "reasoning_content": c.reasoning_content, "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "latency_s": c.latency_s,
            **same,
            "created_at": datetime.now(timezone.utc).isoformat()}


@functools.lru_cache(maxsize=64)
def _redacted_json(raw: bytes) -> str:
    return json.dumps(redact(orjson.loads(raw)))


def sampling_column(sampling: dict[str, Any]) -> str:
    """The trace's `sampling` column: redacted JSON, computed once per distinct setting rather than once per
    sample (redaction walks the environment for secrets, which cost more than the rest of the sample's work)."""
    return _redacted_json(orjson.dumps(sampling))


def _usage_report(cfg: GenerationSettings, usage, seconds: float) -> dict[str, Any]:
    out = {"http_requests": usage.requests, "retries": usage.retries, "failures_by_class": dict(usage.failures),
           "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
           "generation_seconds": round(seconds, 2),
           "completion_tokens_per_s": round(usage.completion_tokens / max(seconds, 1e-9), 1)}
    prices = cfg.teacher.prices
    if prices:
        out["cost_usd"] = round((usage.prompt_tokens * prices.input_per_mtok
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
