"""`--executor ray`: generate, filter and eval on a Ray cluster with Ray Data, writing the run directory a local
run writes, byte for byte where the content is the same.

- Generation: the driver holds the run's cache lock and plans; the prompts that lack samples are streamed into
  plan files that one Ray Data dataset reads in batches, served by one pool of actors for the whole run. Each
  actor runs our own teacher (an API teacher's concurrency and RPM/TPM budget are split across the actors; vLLM
  gets a GPU per actor) and appends each finished sample to a cache segment of its own in the run directory, which must be on a filesystem every node sees. A killed node loses only its
  in-flight samples: Ray Data restarts its actors elsewhere and retries its batches, and a rerun skips every
  sample already in any segment. The driver then writes the traces from the cache as a local run does.
- Filtering: row groups go to Ray tasks running the same pure filter functions (`judge_row_group`); near-dedup's
  LSH band keys are shuffled by key (Ray Data groupby) so the driver sees only keys that two rows share; the
  write pass is the local one.

We build no cluster manager and no scheduler: placement, retries and restarts are Ray's.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config.stages import ExecutorConfig, GenerationSettings
from ..config.teacher import SamplingConfig
from ..core.errors import FactoryError
from ..filters.config import FilterConfig


class Ray:
    """A Ray cluster: generation through an actor pool over Ray Data, the row filters as Ray tasks, near-dedup's
    band keys by a distributed shuffle once there are enough rows (`executor.shuffle_from`)."""

    def buy(self, cfg: GenerationSettings, work: Any, cache: Any, start: Any, budget: Any, adaptive: bool) -> Any:
        return generate_on_ray(cfg, work, cache, start)  # budgets and adaptive rounds: local only (the config says)

    def judge(self, cfg: FilterConfig, groups: list[tuple[str, int, int]], index: Any, workers: int
              ) -> Iterator[tuple[list, list]]:
        return judge_on_ray(cfg, groups, index)

    def band_keys(self, cfg: FilterConfig, signatures: list[bytes]) -> set[tuple[int, int]] | None:
        if len(signatures) < cfg.executor.shuffle_from:
            return None
        return shared_band_keys(signatures)


def connect(ex: ExecutorConfig) -> Any:
    """Joins the cluster (or starts Ray on this machine), shipping the factory package to every worker."""
    try:
        import ray
    except ImportError:
        raise FactoryError("--executor ray needs Ray: pip install 'r1-factory[ray]'") from None
    if not ray.is_initialized():
        # The Ray way to ship code: the driver's factory package (two folders up from this file) goes to every
        # worker, uploaded once and cached per node, so a cluster runs the driver's code, installed there or not.
        package = str(Path(__file__).resolve().parents[1])
        try:
            ray.init(address=ex.address, runtime_env={"py_modules": [package], "excludes": ["__pycache__"]},
                     log_to_driver=False,
                     include_dashboard=False, configure_logging=False)
        except ConnectionError as e:
            raise FactoryError(f"--ray-address {ex.address}: cannot join the Ray cluster ({e})") from None
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # results come back in plan order: the same shards as local
    ctx.enable_progress_bars = False  # our own bar counts samples and rows
    return ray


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def on_gpus(ray: Any) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def replicas(cfg: GenerationSettings, ray: Any) -> int:
    """Actors when `executor.actors` is 0: one vLLM replica per tensor_parallel_size GPUs of the cluster, one
    API client per CPU, one local hf model."""
    if cfg.teacher.engine == "vllm" and on_gpus(ray):
        return max(1, int(ray.cluster_resources()["GPU"]) // cfg.teacher.tensor_parallel_size)
    return cluster_cpus(ray) if cfg.teacher.engine == "openai" else 1


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- generation ---------------------------------------------------------------------------------------------

PLAN_PART_ROWS = 32768  # requests per plan file: the driver holds one part of the plan at a time, never all of it


class GenerateActor:
    """A cache segment per actor and a teacher per batch in flight: an API actor serves OVERLAP batches at once
    (threads, each with its share of the concurrency), so one batch's last requests never leave it idle."""

    def __init__(self, cfg_json: dict[str, Any], cache_dir: str, share: int):
        from ..storage.cache import SegmentWriter, new_segment

        cfg = GenerationSettings.model_validate(cfg_json)
        t = cfg.teacher
        share *= overlap(cfg)
        split = {"concurrency": max(1, t.concurrency // share),  # the global budget, split across the teachers
                 "requests_per_minute": t.requests_per_minute and max(1, t.requests_per_minute // share),
                 "tokens_per_minute": t.tokens_per_minute and max(1, t.tokens_per_minute // share)}
        self.cfg = cfg.model_copy(update={"teacher": t.model_copy(update=split)})
        self.segment = SegmentWriter(new_segment(Path(cache_dir)))
        self.local = threading.local()

    def teacher(self) -> Any:
        if not hasattr(self.local, "teacher"):
            from ..teachers import make_teacher

            self.local.teacher = make_teacher(self.cfg.teacher, self.cfg.sampling, check=False)
        return self.local.teacher

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from ..generation.plan import sampling_key
        from ..storage.cache import cache_record, sampling_column
        from ..storage.records import Prompt
        from ..teachers import Request

        teacher = self.teacher()
        same = {"teacher_model": teacher.model, "engine": teacher.engine,
                "sampling": json.loads(sampling_column(sampling_key(self.cfg)))}
        out: dict[str, list] = {"key": [], "error": [], "error_class": []}
        before = dataclasses.replace(teacher.usage, failures=dict(teacher.usage.failures))

        def sink(req: Request, c: Any) -> None:
            key = req.keys[c.sample_index]
            if not c.error:
                self.segment.put(key, cache_record(same, c))
            out["key"].append(key)
            out["error"].append(c.error)
            out["error_class"].append(c.error_class)

        rows = [json.loads(text) for text in batch.column("text").to_pylist()]  # the plan's JSONL lines
        teacher.generate([Request(Prompt(**r["prompt"]), r["messages"], r["indices"], r["keys"]) for r in rows],
                         sink)
        self.segment.sync()  # what this batch returns as done is on disk before Ray hears of it
        usage = _usage_delta(before, teacher.usage)
        out["usage"] = [usage] + [""] * (len(out["key"]) - 1) if out["key"] else []
        return pa.table(out, schema=pa.schema([("key", pa.string()), ("error", pa.string()),
                                               ("error_class", pa.string()), ("usage", pa.string())]))


def settings_json(cfg: GenerationSettings) -> dict[str, Any]:
    """What an actor needs of a stage's config: GenerationSettings' fields, with plain sampling (a generate
    config's sampling also holds `adaptive`, which runs on the driver, never in an actor)."""
    dump = cfg.model_dump(mode="json")
    out = {k: v for k, v in dump.items() if k in GenerationSettings.model_fields}
    out["sampling"] = {k: v for k, v in dump["sampling"].items() if k in SamplingConfig.model_fields}
    return out


def overlap(cfg: GenerationSettings) -> int:
    """Batches an actor serves at once: two for an API client, one for a local engine (one model per actor)."""
    return 2 if cfg.teacher.engine == "openai" else 1


def batch_size(cfg: GenerationSettings, actors: int) -> int:
    """Prompts per Ray task. An actor's requests in flight drain at the end of each batch, so an API batch holds
    16 rounds of its share of the concurrency (the drain then costs a few percent); an engine batch holds a few
    engine calls."""
    if cfg.executor.batch:
        return cfg.executor.batch
    if cfg.teacher.engine == "openai":
        return 16 * max(1, cfg.teacher.concurrency // (actors * overlap(cfg)))
    return 4 * cfg.teacher.batch_size


def _usage_delta(before: Any, after: Any) -> str:
    return json.dumps({"requests": after.requests - before.requests, "retries": after.retries - before.retries,
                       "prompt_tokens": after.prompt_tokens - before.prompt_tokens,
                       "completion_tokens": after.completion_tokens - before.completion_tokens,
                       "failures": {k: v - before.failures.get(k, 0) for k, v in after.failures.items()
                                    if v - before.failures.get(k, 0)}})


def generate_on_ray(cfg: GenerationSettings, work: Any, cache: Any, start: Any) -> Any:
    """The plan's missing samples on the cluster: actors write their own cache segments, which the driver then
    indexes; failures come back by key as they do locally (a generation.stats.Bought)."""
    import time

    from ..generation.plan import missing_requests
    from ..generation.progress import GenerationProgress
    from ..generation.stats import Bought
    from ..teachers import Completion, Usage

    if cfg.teacher.engine == "openai":
        from ..teachers.openai_compat import preflight

        preflight(cfg.teacher)  # one line here, not one per actor
    usage, errors = Usage(), {}
    gen_started = time.perf_counter()
    with GenerationProgress(start.requested, usage, enabled=cfg.progress) as advance:
        def on_result(key: str, error: str | None, error_class: str | None) -> None:
            if error:
                errors[key] = Completion(0, error=error, error_class=error_class)
            advance()
        try:
            _serve(cfg, missing_requests(work, cache), cache.root, usage, on_result)
        finally:
            cache.refresh()  # what the actors wrote, also when the run was cut short
    return Bought(start.with_usage(cfg, usage, time.perf_counter() - gen_started), errors)


def _serve(cfg: GenerationSettings, requests: Iterator[Any], cache_dir: Path, usage: Any, on_result: Any) -> None:
    """Serves `requests` (the plan's missing samples) on the cluster. `on_result(key, error, error_class)` is
    called for every sample in plan order; `usage` (a teachers.Usage) is updated from the actors' reports.

    The driver streams the plan into JSONL parts beside the cache (a filesystem every node sees), and one Ray
    Data dataset over all the parts runs through one actor pool: each actor (a vLLM replica loads its model
    once) serves the whole run, whatever its size."""
    import shutil
    import uuid

    ray = connect(cfg.executor)
    actors = cfg.executor.actors or replicas(cfg, ray)
    resources = ({"num_gpus": cfg.teacher.tensor_parallel_size} if cfg.teacher.engine == "vllm" and on_gpus(ray)
                 else {"num_cpus": 1})
    cfg_json = settings_json(cfg)
    plan_dir = cache_dir / f"ray-plan-{uuid.uuid4().hex[:8]}"
    try:
        parts, rows = _write_plan(requests, plan_dir)
        if not parts:
            return
        size = batch_size(cfg, actors)
        # A block per batch: a Ray task maps whole blocks, and a task that dies with its node is run again whole,
        # so a block of a whole plan part would buy again every sample its task had finished. Reading the plan
        # takes no CPU slot: the actors may hold every CPU of the cluster for the whole run.
        ds = ray.data.read_text([str(p) for p in parts], override_num_blocks=-(-rows // size),
                                ray_remote_args={"num_cpus": 0}).map_batches(
            GenerateActor, fn_constructor_kwargs={"cfg_json": cfg_json, "cache_dir": str(cache_dir),
                                                  "share": actors},
            batch_size=size, batch_format="pyarrow", **resources,
            compute=ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=overlap(cfg),
                                               enable_true_multi_threading=overlap(cfg) > 1))
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.to_pylist():
                if row["usage"]:
                    _add_usage(usage, json.loads(row["usage"]))
                on_result(row["key"], row["error"], row["error_class"])
    finally:
        shutil.rmtree(plan_dir, ignore_errors=True)


def _write_plan(requests: Iterator[Any], plan_dir: Path) -> tuple[list[Path], int]:
    """The requests as JSONL parts of PLAN_PART_ROWS lines each, in plan order; and how many there are."""
    parts: list[Path] = []
    rows = 0
    items = ({"prompt": dataclasses.asdict(r.prompt), "messages": r.messages, "indices": r.sample_indices,
              "keys": r.keys} for r in requests)
    for part in _batches(items, PLAN_PART_ROWS):
        plan_dir.mkdir(parents=True, exist_ok=True)
        path = plan_dir / f"part-{len(parts):05d}.jsonl"
        path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in part))
        parts.append(path)
        rows += len(part)
    return parts, rows


def _add_usage(usage: Any, d: dict[str, Any]) -> None:
    usage.requests += d["requests"]
    usage.retries += d["retries"]
    usage.prompt_tokens += d["prompt_tokens"]
    usage.completion_tokens += d["completion_tokens"]
    for k, v in d["failures"].items():
        usage.failures[k] = usage.failures.get(k, 0) + v


# --- filtering ----------------------------------------------------------------------------------------------

def judge_on_ray(cfg: FilterConfig, groups: list[tuple[str, int, int]], index: Any) -> Iterator[tuple[list, list]]:
    """Row filters over row groups as Ray tasks; yields (prompt_ids, judgements) per row group, in order."""
    import pickle

    ray = connect(cfg.executor)
    cfg_json = cfg.model_dump(mode="json")
    index_ref = ray.put(index)

    def judge(batch: Any) -> Any:
        import pyarrow as pa

        from ..filters.rows import judge_row_group

        idx = ray.get(index_ref)  # the decontamination index, shipped once through the object store
        conf = FilterConfig.model_validate(cfg_json)
        results = [pickle.dumps(judge_row_group(p, g, t, conf, idx))
                   for p, g, t in zip(batch["path"].to_pylist(), batch["group"].to_pylist(), batch["task"].to_pylist())]
        return pa.table({"result": pa.array(results, pa.binary())})

    items = [{"path": p, "group": g, "task": t} for p, g, t in groups]
    ds = ray.data.from_items(items).map_batches(
        judge, batch_size=cfg.executor.batch or 1, batch_format="pyarrow", num_cpus=1,
        concurrency=cfg.executor.actors or cluster_cpus(ray))
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for blob in batch.column("result").to_pylist():
            yield pickle.loads(blob)


def shared_band_keys(signatures: list[bytes]) -> set[tuple[int, int]]:
    """The (band, key) pairs that at least two rows share, by a Ray Data groupby on the key (a hash shuffle
    across the cluster): a row whose band keys are all its own can neither be a near duplicate nor make one, so
    the driver's greedy pass needs only these."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    if not signatures:
        return set()
    keys = np.frombuffer(b"".join(signatures), dtype="<u8")
    bands = len(signatures[0]) // 8
    table = pa.table({"band": np.tile(np.arange(bands, dtype=np.int64), len(signatures)),
                      "key": keys.view(np.int64)})  # int64 for Arrow: the same 8 bytes
    counts = ray.data.from_arrow(table).groupby(["band", "key"]).count()
    shared = counts.map_batches(lambda t: t.filter(pc.greater(t["count()"], 1)), batch_format="pyarrow")
    out: set[tuple[int, int]] = set()
    for batch in shared.iter_batches(batch_format="pyarrow", batch_size=None):
        unsigned = batch["key"].to_numpy().view(np.uint64)
        out.update(zip(batch["band"].to_pylist(), (int(k) for k in unsigned)))
    return out
