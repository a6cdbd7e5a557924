"""`factory generate`: a teacher writes traces for every prompt × n; they land in `traces/` Parquet shards.

Every finished sample goes to the cache at once; a rerun (after a crash, a raised n or a changed setting)
requests only what the cache lacks. Shards are rebuilt from the cache at the end, atomically.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..cache import SampleCache, sample_key
from ..config import GenerateConfig, fingerprint, public_dump
from ..progress import GenerationProgress
from ..records import TRACE_SCHEMA, Prompt, Trace
from ..rundir import write_resolved_config
from ..shards import ShardWriter, write_json_atomic
from ..sources import load_prompts
from ..teachers import Completion, Request, make_teacher, resolve_engine
from ..teachers.reasoning import split_reasoning
from ..teachers.template import build_messages

console = Console(stderr=True)


def sampling_key(cfg: GenerateConfig) -> dict[str, Any]:
    """The settings that change what the teacher writes (and so the cache key); n is not one of them."""
    s = cfg.sampling
    return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
            "extra_body": cfg.teacher.extra_body}


def plan(cfg: GenerateConfig, prompts: list[Prompt]) -> list[tuple[Prompt, list[dict], list[str]]]:
    """For each prompt: its messages and the cache key of each sample index."""
    sampling = sampling_key(cfg)
    out = []
    for p in prompts:
        messages = build_messages(p, cfg.template)
        keys = [sample_key({"prompt_id": p.prompt_id, "messages": messages, "model": cfg.teacher.model,
                            "sampling": sampling, "sample_index": i}) for i in range(cfg.sampling.n)]
        out.append((p, messages, keys))
    return out


def run(cfg: GenerateConfig) -> dict[str, Any]:
    started = time.perf_counter()
    prompts = load_prompts(cfg.prompts)  # bad input fails here, before a request is sent or a file written
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"engine": resolve_engine(cfg.teacher.engine)})})
    run_dir = Path(cfg.out)
    fresh = not run_dir.exists()
    work = plan(cfg, prompts)
    try:
        with SampleCache(run_dir / "cache") as cache:
            report = generate_missing(cfg, work, cache)
            report.update(_write_traces(cfg, work, cache, report.pop("errors")))
    except BaseException:
        if fresh and not any((run_dir / "cache").glob("seg-*")):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was bought: leave no empty run behind
        raise
    report["seconds"] = round(time.perf_counter() - started, 2)
    fp = write_resolved_config(run_dir, "generate", cfg)
    report["fingerprint"] = fp
    write_json_atomic(run_dir / "generate_stats.json", report)
    _print_report(cfg, report)
    return report


def generate_missing(cfg: GenerateConfig, work, cache: SampleCache) -> dict[str, Any]:
    requests, keys_of = [], {}
    for prompt, messages, keys in work:
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            req = Request(prompt=prompt, messages=messages, sample_indices=missing)
            requests.append(req)
            keys_of[id(req)] = keys
    todo = sum(len(r.sample_indices) for r in requests)
    report: dict[str, Any] = {"prompts": len(work), "samples": len(work) * cfg.sampling.n,
                              "cached": len(work) * cfg.sampling.n - todo, "requested": todo, "errors": {}}
    if not requests:
        return report
    teacher = make_teacher(cfg.teacher, cfg.sampling)
    errors: dict[str, Completion] = report["errors"]
    gen_started = time.perf_counter()
    try:
        with GenerationProgress(todo, teacher.usage, enabled=cfg.progress) as advance:
            def sink(req: Request, c: Completion) -> None:
                key = keys_of[id(req)][c.sample_index]
                if c.error:
                    errors[key] = c  # not cached: a rerun tries it again
                else:
                    cache.put(key, _cache_record(teacher, cfg, c))
                advance()
            teacher.generate(requests, sink)
    finally:
        teacher.close()
    report.update(_usage_report(cfg, teacher.usage, time.perf_counter() - gen_started))
    return report


def _cache_record(teacher, cfg: GenerateConfig, c: Completion) -> dict[str, Any]:
    return {"text": c.text, "reasoning_content": c.reasoning_content, "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "latency_s": c.latency_s,
            "teacher_model": teacher.model, "engine": teacher.engine, "sampling": sampling_key(cfg),
            "created_at": datetime.now(timezone.utc).isoformat()}


def _usage_report(cfg: GenerateConfig, usage, seconds: float) -> dict[str, Any]:
    out = {"http_requests": usage.requests, "retries": usage.retries, "failures_by_class": dict(usage.failures),
           "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
           "generation_seconds": round(seconds, 2),
           "completion_tokens_per_s": round(usage.completion_tokens / max(seconds, 1e-9), 1)}
    prices = cfg.teacher.prices
    if prices:
        out["cost_usd"] = round((usage.prompt_tokens * prices.input_per_mtok
                                 + usage.completion_tokens * prices.output_per_mtok) / 1e6, 6)
    return out


def _write_traces(cfg: GenerateConfig, work, cache: SampleCache, errors: dict[str, Completion]) -> dict[str, Any]:
    engine, model = cfg.teacher.engine, cfg.teacher.model
    counts: Counter[str] = Counter()
    with ShardWriter(Path(cfg.out) / "traces", TRACE_SCHEMA, cfg.shard_rows,
                     extra={"stage": "generate", "teacher": f"{engine}:{model}", "fingerprint": fingerprint(cfg),
                            "config": public_dump(cfg)}) as writer:
        for prompt, messages, keys in work:
            rows = []
            for index, key in enumerate(keys):
                rec = cache.get(key)
                trace = make_trace(cfg, prompt, messages, index, rec, errors.get(key))
                counts["failed" if trace.error else "ok"] += 1
                counts["truncated"] += trace.truncated
                counts[f"error:{(trace.error or '').split(':')[0]}"] += bool(trace.error)
                rows.append(trace.to_row())
            writer.write_rows(rows)
        manifest = writer.close()
    failed = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("error:") and v}
    return {"rows": manifest["rows"], "ok": counts["ok"], "failed": counts["failed"],
            "failed_by_class": failed, "truncated": counts["truncated"]}


def make_trace(cfg: GenerateConfig, prompt: Prompt, messages: list[dict], index: int, rec: dict | None,
           err: Completion | None) -> Trace:
    base = dict(prompt=prompt, sample_index=index, messages=json.dumps(messages, ensure_ascii=False))
    if rec is None:
        error = err.error if err else "missing: the sample is not in the cache (rerun to generate it)"
        return Trace(**base, teacher_model=cfg.teacher.model, engine=cfg.teacher.engine,
                     sampling=json.dumps(sampling_key(cfg)), error=error)
    reasoning, answer, source = split_reasoning(rec["text"], rec.get("reasoning_content"), cfg.reasoning.untagged)
    return Trace(**base, teacher_model=rec["teacher_model"], engine=rec["engine"],
                 sampling=json.dumps(rec["sampling"]), reasoning=reasoning, answer=answer,
                 raw_completion=rec["text"], reasoning_source=source, finish_reason=rec.get("finish_reason"),
                 truncated=rec.get("finish_reason") == "length", prompt_tokens=rec.get("prompt_tokens"),
                 completion_tokens=rec.get("completion_tokens"), latency_s=rec.get("latency_s"),
                 created_at=datetime.fromisoformat(rec["created_at"]))


def _print_report(cfg: GenerateConfig, r: dict[str, Any]) -> None:
    table = Table(title=f"generate -> {cfg.out}/traces", show_header=False)
    for label, key in [("prompts", "prompts"), ("samples", "samples"), ("from cache", "cached"),
                       ("requested now", "requested"), ("ok", "ok"), ("failed", "failed"),
                       ("truncated (finish_reason=length)", "truncated"), ("completion tokens", "completion_tokens"),
                       ("tokens/s", "completion_tokens_per_s"), ("cost (USD)", "cost_usd"), ("seconds", "seconds")]:
        if key in r:
            table.add_row(label, str(r[key]))
    if r.get("failed_by_class"):
        table.add_row("failures", ", ".join(f"{k}: {v}" for k, v in r["failed_by_class"].items()))
    console.print(table)
