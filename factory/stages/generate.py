"""`factory generate`: a teacher writes traces for every prompt × n; they land in `traces/` Parquet shards.

Every finished sample goes to the cache at once; a rerun (after a crash, a raised n or a changed setting)
requests only what the cache lacks. Shards are rebuilt from the cache at the end, atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..cache import SampleCache, sample_key
from ..config import GenerateConfig, fingerprint, public_dump
from ..errors import FactoryError
from ..progress import GenerationProgress
from ..records import TRACE_SCHEMA, Prompt, Trace
from ..redact import redact, redact_text
from ..rundir import RunDir, write_resolved_config
from ..shards import ShardWriter, write_json_atomic
from ..sources import load_prompts
from ..teachers import Completion, Request, make_teacher, resolve_engine
from ..teachers.reasoning import split_reasoning
from ..teachers.template import build_messages

console = Console(stderr=True)


CACHE_FIELDS = ("text", "teacher_model", "engine", "sampling", "created_at")  # what make_trace reads


def sampling_key(cfg: GenerateConfig) -> dict[str, Any]:
    """The settings that change what the teacher writes (and so the cache key); n is not one of them."""
    s = cfg.sampling
    return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
            "extra_body": cfg.teacher.extra_body}


class Plan:
    """For each prompt: its messages and the cache key of each sample index, computed as it is iterated (a
    million-sample plan is never held as a list of keys)."""

    def __init__(self, cfg: GenerateConfig, prompts: list[Prompt]):
        self.cfg, self.prompts, self.sampling = cfg, prompts, sampling_key(cfg)

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[tuple[Prompt, list[dict], list[str]]]:
        for p in self.prompts:
            messages = build_messages(p, self.cfg.template)
            keys = [sample_key({"prompt_id": p.prompt_id, "messages": messages, "model": self.cfg.teacher.model,
                                "sampling": self.sampling, "sample_index": i}) for i in range(self.cfg.sampling.n)]
            yield p, messages, keys


def plan(cfg: GenerateConfig, prompts: list[Prompt]) -> Plan:
    return Plan(cfg, prompts)


def run(cfg: GenerateConfig) -> dict[str, Any]:
    started = time.perf_counter()
    prompts = load_prompts(cfg.prompts)  # bad input fails here, before a request is sent or a file written
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"engine": resolve_engine(cfg.teacher.engine)})})
    run_dir = check_out_dir(Path(cfg.out))
    created = not run_dir.exists()
    work = plan(cfg, prompts)
    with SampleCache(RunDir(run_dir).cache, CACHE_FIELDS) as cache:  # the run's lock: taken before anything else is written
        try:
            report = generate_missing(cfg, work, cache)
            report.update(_write_traces(cfg, work, cache, report.pop("errors")))
        except BaseException:
            if created and len(cache) == 0:
                _remove_empty_run(run_dir)  # nothing was bought: leave no empty run behind
            raise
    report["seconds"] = round(time.perf_counter() - started, 2)
    fp = write_resolved_config(run_dir, "generate", cfg)
    report["fingerprint"] = fp
    write_json_atomic(RunDir(run_dir).generate_stats, report)
    _print_report(cfg, report)
    if report["ok"] == 0 and report["rows"]:
        first = next(iter(report["failed_by_class"]), "unknown")
        raise FactoryError(f"{cfg.out}: no sample succeeded ({report['failed']} failed, mostly {first}); "
                           f"see the error column of {cfg.out}/traces")
    return report


def check_out_dir(run_dir: Path) -> Path:
    """`--out` must be a directory this process can write: one line otherwise, before anything is created."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FactoryError(f"{run_dir}: --out is a file, not a run directory")
    existing = next((p for p in [run_dir, *run_dir.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise FactoryError(f"{run_dir}: cannot create the run directory: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FactoryError(f"{run_dir}: cannot create the run directory: {existing} is not writable")
    return run_dir


def _remove_empty_run(run_dir: Path) -> None:
    """Called by the lock holder only, while it holds the lock: removes the empty cache it made, then the run
    directory if nothing else is in it. Never removes what another process put there."""
    cache = RunDir(run_dir).cache
    for seg in cache.glob("seg-*.log"):
        if seg.stat().st_size == 0:
            seg.unlink()
    if [p.name for p in cache.iterdir()] == ["LOCK"]:
        (cache / "LOCK").unlink()
    for d in (cache, run_dir):
        try:
            d.rmdir()  # only when empty
        except OSError:
            return


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
            "teacher_model": teacher.model, "engine": teacher.engine, "sampling": redact(sampling_key(cfg)),
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
    with ShardWriter(RunDir(cfg.out).traces, TRACE_SCHEMA, cfg.shard_rows,
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
        error = redact_text(err.error) if err else "missing: the sample is not in the cache (rerun to generate it)"
        return Trace(**base, teacher_model=cfg.teacher.model, engine=cfg.teacher.engine,
                     sampling=json.dumps(redact(sampling_key(cfg))), error=error)
    reasoning, answer, source = split_reasoning(rec["text"], rec.get("reasoning_content"), cfg.reasoning.untagged)
    return Trace(**base, teacher_model=rec["teacher_model"], engine=rec["engine"],
                 sampling=json.dumps(redact(rec["sampling"])), reasoning=reasoning, answer=answer,
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
