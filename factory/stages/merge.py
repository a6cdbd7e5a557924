"""`factory merge RUN_DIR`: joins the shards `factory generate --shard I/N` wrote (RUN_DIR/shards/I-of-N, e.g. one
per Slurm array task) into RUN_DIR/traces, as if one unsharded run had written them.

It refuses, in one line naming the shard, to merge a missing or unfinished shard, shards of different N, or
shards generated with different settings; the merged traces carry the unsharded config (so its fingerprint is an
unsharded run's) and generate_stats.json the shards' counts summed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console

from ..config.loader import artifact_config, fingerprint
from ..config.stages import GenerateConfig, MergeConfig
from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.jsonfiles import write_json_atomic
from ..generation.stats import GenerateStats
from ..storage.records import TRACE_SCHEMA
from ..storage.rundir import RunDir, write_resolved_config
from ..storage.shards import ShardWriter, iter_batches, read_manifest

console = Console(stderr=True)
Config = MergeConfig  # `factory merge`: a command, not a pipeline stage (no KIND)
CLI_ARGUMENT, CLI_OPTIONS = "run_dir", ()
INTERRUPTED = "the traces are unchanged (the merged shards replace them only when complete)"
_SHARD = re.compile(r"^(\d+)-of-(\d+)$")


def run(cfg: MergeConfig, ctx: RunContext = DIRECT) -> GenerateStats:
    rd = RunDir(cfg.run_dir)
    shards = find_shards(rd)
    configs = [read_manifest(RunDir(s).traces)["config"] for s in shards]
    merged = check_same_settings(shards, configs, rd)
    extra = {"stage": "generate", "teacher": f"{merged.teacher.engine}:{merged.teacher.model}",
             "fingerprint": fingerprint(merged), "config": artifact_config(merged),
             "merged_from": [s.name for s in shards]}
    seen: set[str] = set()
    with ShardWriter(rd.traces, TRACE_SCHEMA, cfg.shard_rows, extra) as writer:
        for shard in shards:
            mine: set[str] = set()
            for batch in iter_batches(RunDir(shard).traces, TRACE_SCHEMA):
                mine.update(batch.column("prompt_id").to_pylist())
                writer.write_table(pa.Table.from_batches([batch]))
            if mine & seen:  # the split is by prompt_id: a prompt in two shards means they were not one split
                raise FactoryError(f"{shard}: prompt {sorted(mine & seen)[0]} is in another shard too")
            seen |= mine
        manifest = writer.close()
    stats = summed_stats(shards).model_copy(update={"shards": len(shards), "merged_from": [s.name for s in shards]})
    write_json_atomic(rd.generate_stats, stats.to_json())
    write_resolved_config(rd.root, "generate", merged, ctx, {"merged_from": [s.name for s in shards]})
    console.print(f"merge: {len(shards)} shards, {manifest['rows']} traces -> {rd.traces}")
    return stats


def find_shards(rd: RunDir) -> list[Path]:
    """Every shard I-of-N, all of one N, all finished; missing ones named."""
    found = {}
    for path in sorted((rd.root / "shards").glob("*-of-*")):
        m = _SHARD.match(path.name)
        if m and path.is_dir():
            found[(int(m.group(1)), int(m.group(2)))] = path
    if not found:
        raise FactoryError(f"{rd.root}: no shards to merge (expected {rd.root}/shards/I-of-N from generate --shard)")
    counts = sorted({n for _, n in found})
    if len(counts) > 1:
        raise FactoryError(f"{rd.root}/shards: shards of different N ({', '.join(map(str, counts))}): remove the "
                           "stale ones")
    n = counts[0]
    missing = [f"{i}-of-{n}" for i in range(n) if (i, n) not in found]
    if missing:
        raise FactoryError(f"{rd.root}/shards: missing {', '.join(missing)} (run generate --shard I/{n} for each)")
    shards = [found[(i, n)] for i in range(n)]
    for s in shards:
        if not (RunDir(s).traces / "manifest.json").exists():
            raise FactoryError(f"{s}: unfinished (no traces/manifest.json): rerun its generate --shard to finish it")
    return shards


def check_same_settings(shards: list[Path], configs: list[dict[str, Any]], rd: RunDir) -> GenerateConfig:
    """The shards' configs must agree on everything but `out` and `shard`; returns the unsharded config."""
    def comparable(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("out", "shard", "progress")}

    first = comparable(configs[0])
    for shard, c in zip(shards[1:], configs[1:]):
        other = comparable(c)
        if other != first:
            key = next(k for k in sorted(set(first) | set(other)) if first.get(k) != other.get(k))
            raise FactoryError(f"{shard}: generated with other settings than {shards[0].name} (field '{key}')")
    return GenerateConfig.model_validate({**configs[0], "out": str(rd.root), "shard": None})


def summed_stats(shards: list[Path]) -> GenerateStats:
    """The shards' generate stats added up (a shard without its stats file counts nothing)."""
    total = GenerateStats()
    for s in shards:
        path = RunDir(s).generate_stats
        if path.exists():
            total = total + GenerateStats.read(path, "generation statistics")
    return total
