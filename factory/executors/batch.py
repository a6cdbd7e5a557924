"""A provider's Batch API (OpenAI's, through the `openai` SDK): the samples the cache lacks are written as batch
JSONL (one line per sample, its cache key as `custom_id`), split under the provider's request and byte limits,
uploaded and submitted; the batches are polled and their results read into the same per-sample cache.

Nothing is paid twice: every id is written to RUN/batches/state.json the moment the provider returns it, before
the next call, and a rerun (after a crash, a kill, a closed laptop) takes up the batches it finds there, never
submitting a sample that a batch not yet read still holds. A batch created whose id was never written (a kill
between the two) is found again by its input file's id. Failed and expired requests are counted by class and
submitted again (only those, `batch_resubmits` times); what still fails is reported as failed, never dropped.

A run is never stuck on a batch it cannot read: each entry records the endpoint it was sent to, and a batch the
provider no longer knows (another endpoint, key or account; a server restarted; an input file it expired) is
marked gone, in one line, and only its samples the cache lacks are submitted again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
from rich.console import Console

from ..config.stages import GenerateConfig
from ..core.errors import FactoryError
from ..core.jsonfiles import read_json, write_json_atomic
from ..generation.plan import Plan, endpoint, sampling_key
from ..generation.progress import BatchProgress
from ..generation.stats import Bought, GenerationStats
from ..storage.cache import SampleCache, cache_record, sampling_column
from ..teachers import Completion, Usage
from ..teachers.openai_compat import chat_body, completions_from, preflight, sync_client

console = Console(stderr=True)

DONE = {"completed", "failed", "expired", "cancelled"}
MAX_LOST = 3  # rounds in a row whose batches the provider lost, before the run stops (a provider that forgets all)


class BatchState:
    """RUN/batches/: the input files, and state.json (one entry per input file: its upload's id, its batch's id,
    whether its results are in the cache)."""

    def __init__(self, root: Path, endpoint: str):
        self.root, self.endpoint = root, endpoint
        self.path = root / "state.json"
        self.entries: list[dict[str, Any]] = read_json(self.path, "batch state")["batches"] if self.path.exists() else []

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"batches": self.entries})

    def open(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if not e.get("collected") and not e.get("gone")]

    def submitted_keys(self) -> set[str]:
        """Every sample any batch of this run was sent (read or not, gone or not)."""
        return self.keys_of(self.entries)

    def keys_of(self, entries: list[dict[str, Any]]) -> set[str]:
        keys: set[str] = set()
        for e in entries:
            with open(self.root / e["file"], "rb") as f:
                keys.update(json.loads(line)["custom_id"] for line in f)
        return keys

    def forget_other_endpoints(self) -> int:
        """Open batches sent to another endpoint cannot be read from this one: marked gone (their samples the
        cache lacks go again). Entries written before endpoints were recorded are taken as this endpoint's."""
        moved = [e for e in self.open() if e.get("endpoint", self.endpoint) != self.endpoint]
        for e in moved:
            e["gone"] = f"sent to {e['endpoint']}, not {self.endpoint}"
        if moved:
            self.save()
        return len(moved)

    def pending_keys(self) -> set[str]:
        """The samples a batch not yet read holds: they are not submitted again."""
        return self.keys_of(self.open())


def generate_in_batches(cfg: GenerateConfig, work: Plan, cache: SampleCache, start: GenerationStats,
                        budget=None) -> Bought:
    preflight(cfg.teacher)  # a refused key or a wrong URL: one line, before a batch file is written
    state = BatchState(cache.root.parent / "batches", endpoint(cfg.teacher.base_url))
    moved = state.forget_other_endpoints()
    if moved:
        console.print(f"[yellow]batch[/]: {moved} open batch(es) in {state.path} were sent to another endpoint; "
                      f"their samples the cache lacks go to {state.endpoint}")
    missing = {k for _, _, keys in work for k in keys if k not in cache}
    client = sync_client(cfg.teacher, max_retries=3, timeout_s=cfg.teacher.timeout_s)
    usage, started = Usage(), time.perf_counter()
    same = {"teacher_model": cfg.teacher.model, "engine": "openai",
            "sampling": json.loads(sampling_column(sampling_key(cfg)))}
    try:
        with BatchProgress(start.requested, enabled=cfg.progress) as progress:
            _rounds(cfg, work, cache, state, client, budget, lambda: _wait(cfg, cache, state, client, usage, same,
                                                                           progress))
    except openai.APIError as e:
        raise FactoryError(f"{cfg.teacher.base_url or 'the OpenAI API'}: batch API: {type(e).__name__}: "
                           f"{str(e)[:200]} (the batches so far are in {state.path}; rerun to go on)") from None
    finally:
        client.close()
    sent = state.submitted_keys() & missing
    errors: dict[str, Completion] = {}
    for _, _, keys in work:
        for i, k in enumerate(keys):
            if k in sent and k not in cache:  # a sample never sent (a budget stopped first) is not a failure
                errors[k] = Completion(sample_index=i, error="batch: failed in every submission "
                                       f"({cfg.teacher.batch_resubmits + 1}); rerun to submit it again",
                                       error_class="batch_failed")
    if budget is not None:
        budget.spent.samples = sum(k in cache for _, _, keys in work for k in keys)  # bought, not sent
    stats = start.with_usage(cfg, usage, time.perf_counter() - started)
    return Bought(stats.model_copy(update={"requested": len(sent), "batches": len(state.entries)}), errors)


def _rounds(cfg: GenerateConfig, work: Plan, cache: SampleCache, state: BatchState, client, budget, wait) -> None:
    """Submit what is missing, wait for it; again for what failed (`batch_resubmits` times). A round whose batches
    the provider lost is not counted as a try; MAX_LOST of them in a row stop the run."""
    tries = lost_in_a_row = 0
    while True:
        _submit(cfg, work, cache, state, client, budget)
        if not state.open():
            return  # nothing sent or in flight: all bought, or the budget is spent
        lost = wait()
        if not any(k not in cache for _, _, keys in work for k in keys):
            return
        lost_in_a_row = lost_in_a_row + 1 if lost else 0
        if lost_in_a_row > MAX_LOST:
            raise FactoryError(f"{state.endpoint}: batch API: the provider lost the batches {lost_in_a_row} times "
                               f"in a row (see {state.path}); check teacher.base_url and the key")
        tries += 0 if lost else 1
        if tries > cfg.teacher.batch_resubmits:
            return


def _submit(cfg: GenerateConfig, work: Plan, cache: SampleCache, state: BatchState, client, budget) -> None:
    """Writes, uploads and creates batches for the samples neither cached nor held by a batch not yet read;
    first finishes what a killed run left half-done (a file not uploaded, an upload with no batch)."""
    pending = state.pending_keys()
    lines = []
    for _, messages, keys in work:
        body = None
        for k in keys:
            if k in cache or k in pending:
                continue
            body = body or chat_body(cfg.teacher, cfg.sampling, messages)
            lines.append(json.dumps({"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
                                     "body": body}, ensure_ascii=False).encode() + b"\n")
    if budget is not None and budget.cfg.max_samples is not None:
        held = sum(k in cache for _, _, keys in work for k in keys) + len(pending)  # bought, and in flight
        room = max(0, budget.cfg.max_samples - held)
        if room < len(lines):
            budget.stopped = "budget.max_samples"
        lines = lines[:room]
        budget.spent.samples = held + len(lines)
    for chunk in _split(lines, cfg.teacher.batch_max_requests, int(cfg.teacher.batch_max_mb * 1e6)):
        name = f"input-{len(state.entries):05d}.jsonl"
        state.root.mkdir(parents=True, exist_ok=True)
        tmp = state.root / f".{name}.tmp"
        tmp.write_bytes(b"".join(chunk))
        tmp.replace(state.root / name)
        state.entries.append({"file": name, "requests": len(chunk), "endpoint": state.endpoint})
        state.save()  # the file is ours before anything is sent
    for entry in state.open():
        _upload_and_create(entry, state, client)


def _upload_and_create(entry: dict[str, Any], state: BatchState, client) -> None:
    if "batch_id" not in entry and "input_file_id" in entry:  # uploaded by an earlier run: is it still there?
        try:
            _create(entry, state, client)
            return
        except (openai.NotFoundError, openai.BadRequestError):
            console.print(f"[yellow]batch[/]: {entry['file']}: the provider no longer has its upload "
                          f"{entry['input_file_id']}; uploading it again")
            del entry["input_file_id"]
    if "input_file_id" not in entry:
        with open(state.root / entry["file"], "rb") as f:
            entry["input_file_id"] = client.files.create(file=(entry["file"], f), purpose="batch").id
        state.save()
    if "batch_id" not in entry:
        _create(entry, state, client)


def _create(entry: dict[str, Any], state: BatchState, client) -> None:
    found = next((b.id for b in client.batches.list(limit=100) if b.input_file_id == entry["input_file_id"]),
                 None)  # created before a kill that kept its id from being written
    entry["batch_id"] = found or client.batches.create(
        input_file_id=entry["input_file_id"], endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"factory_file": entry["file"]}).id
    state.save()


def _wait(cfg: GenerateConfig, cache: SampleCache, state: BatchState, client, usage: Usage, same: dict,
          progress: BatchProgress) -> int:
    """Polls every open batch until each is done (its results read as soon as it is) or gone; returns how many
    were gone (the provider does not know the batch or its results file any more)."""
    lost = 0
    while True:
        for entry in state.open():
            try:
                batch = client.batches.retrieve(entry["batch_id"])
                entry["status"] = batch.status
                counts = batch.request_counts
                entry["done"] = (counts.completed + counts.failed) if counts else 0
                if batch.status in DONE:
                    _collect(entry, batch, cache, client, usage, same)
                    entry["collected"] = True
            except openai.NotFoundError:
                lost += 1
                _lose(entry, state, cache)
            state.save()
        progress.show(state.entries, usage)
        if not state.open():
            return lost
        time.sleep(cfg.teacher.batch_poll_s)


def _lose(entry: dict[str, Any], state: BatchState, cache: SampleCache) -> None:
    entry["gone"] = f"the provider does not know batch {entry['batch_id']} (or its results) any more"
    left = sum(k not in cache for k in state.keys_of([entry]))
    console.print(f"[yellow]batch[/]: {entry['file']}: {entry['gone']}; its {left} sample(s) the cache lacks "
                  "are submitted again (those already read are kept, never bought twice)")


def _collect(entry: dict[str, Any], batch, cache: SampleCache, client, usage: Usage, same: dict) -> None:
    """A finished batch's successes into the cache; its failures counted by class (the samples stay missing, so
    the next submission asks for them again)."""
    ok = failed = 0
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for line in client.files.content(file_id).text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            response = item.get("response") or {}
            body = response.get("body") or {}
            if response.get("status_code") == 200 and body.get("choices"):
                (c,) = completions_from(body["choices"][:1], body.get("usage") or {}, None, [0])
                cache.put(item["custom_id"], cache_record(same, c))
                usage.prompt_tokens += (body.get("usage") or {}).get("prompt_tokens") or 0
                usage.completion_tokens += (body.get("usage") or {}).get("completion_tokens") or 0
                ok += 1
            else:
                error = item.get("error") or {}
                usage.fail(str(error.get("code") or response.get("status_code") or "batch_error"))
                failed += 1
    unanswered = entry["requests"] - ok - failed
    if unanswered > 0:  # an expired or failed batch: what it never reached
        usage.failures[f"batch_{batch.status}"] = usage.failures.get(f"batch_{batch.status}", 0) + unanswered
    usage.requests += ok
    entry.update(ok=ok, failed=failed + max(unanswered, 0))


def _split(lines: list[bytes], max_requests: int, max_bytes: int) -> list[list[bytes]]:
    chunks: list[list[bytes]] = [[]]
    size = 0
    for line in lines:
        if chunks[-1] and (len(chunks[-1]) >= max_requests or size + len(line) > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    return [c for c in chunks if c]
