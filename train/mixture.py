"""The SFT data mixture: R1 trained its students on ~600k reasoning and ~200k non-reasoning samples.

`distill.mix` lists sources; each yields (messages, reasoning, answer) items:
- a run directory: its `filtered/kept` traces (reasoning);
- a JSONL/Parquet file or `hf:NAME`: rows with `messages` (chat; the last assistant turn is the target, its
  `<think>` block, if any, becomes the reasoning), or a prompt column (`problem`/`question`/`prompt`/`instruction`)
  and a response column (`response`/`answer`/`output`/`completion`), with an optional `reasoning` column.
A non-reasoning source (`reasoning: false`) trains the answer alone, or after an empty `<think>` block
(`empty_think: true`, as R1 did for simple queries). `count` takes that many samples (seeded), `weight` scales the
source (2: every sample twice; 0.5: a random half). An empty `mix` means the run's own kept traces.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.config.stages import DistillConfig, MixSource
from factory.core.errors import FactoryError
from factory.sources.spec import is_file_spec, parse_source
from factory.storage.rundir import RunDir

PROMPT_KEYS = ("problem", "question", "prompt", "instruction")
RESPONSE_KEYS = ("response", "answer", "output", "completion")


@dataclass(frozen=True)
class Item:
    messages: list[dict]
    reasoning: str | None  # None: a non-reasoning sample
    answer: str
    source: str
    empty_think: bool = False


def sources(cfg: DistillConfig) -> list[MixSource]:
    return cfg.mix or [MixSource(source=cfg.run_dir)]


def load_items(cfg: DistillConfig) -> tuple[list[Item], list[dict[str, Any]]]:
    """Every item of the mixture in memory, in a seeded order, and a line per source (for tests and small runs;
    training streams them with `stream_items`)."""
    report: list[dict[str, Any]] = []
    items = list(stream_items(cfg, report))
    random.Random(cfg.seed).shuffle(items)
    return items, report


def stream_items(cfg: DistillConfig, report: list[dict[str, Any]]) -> Iterator[Item]:
    """The mixture's items source after source, each source read once as a stream (a `count` or a fractional
    `weight` first counts its rows: which rows are taken is drawn from the row numbers alone, seeded). `report`
    gets a line per source (for the summary and the card) as each source is finished."""
    rng = random.Random(cfg.seed)
    for src in sources(cfg):
        times = _multiplicity(src, rng)
        available = used = 0
        for i, item in enumerate(_rows(src)):
            available += 1
            for _ in range(times(i)):
                used += 1
                yield item
        if not available:
            raise FactoryError(f"distill.mix: {src.source}: no samples")
        report.append({"source": src.source, "reasoning": src.reasoning, "available": available, "used": used,
                       **({"count": src.count} if src.count is not None else {}),
                       **({"weight": src.weight} if src.weight is not None else {})})


def _multiplicity(src: MixSource, rng: random.Random) -> Callable[[int], int]:
    """How many times row i of the source is used."""
    weight = 1.0 if src.weight is None else src.weight
    whole, part = int(weight), weight - int(weight)
    if src.count is None and not part:
        return lambda i: whole
    rows = _count(src)
    if not rows:
        raise FactoryError(f"distill.mix: {src.source}: no samples")
    if src.count is not None:
        if src.count > rows:
            raise FactoryError(f"distill.mix: {src.source}: count {src.count} but only {rows} samples")
        chosen = set(rng.sample(range(rows), src.count))
        return lambda i: int(i in chosen)
    extra = set(rng.sample(range(rows), round(part * rows)))
    return lambda i: whole + (i in extra)


def _count(src: MixSource) -> int:
    """The source's rows: a run's kept traces from their manifest, a file or dataset by a pass over it."""
    path = Path(src.source)
    if path.is_dir():
        from factory.storage.shards import read_manifest

        return int(read_manifest(RunDir(path).kept)["rows"])
    return sum(1 for _ in _rows(src))


def _rows(src: MixSource) -> Iterator[Item]:
    path = Path(src.source)
    if path.is_dir():
        yield from _run_rows(RunDir(path).kept, src)
    elif parse_source(src.source).kind == "hf" or is_file_spec(src.source):
        for i, row in enumerate(_table_rows(src)):
            yield _row_item(row, src, f"{src.source}: row {i + 1}")
    else:
        raise FactoryError(f"distill.mix: {src.source}: not a run directory, a .jsonl/.parquet file or hf:NAME")


def run_items(kept: Path) -> Iterator[Item]:
    """A run's kept traces as reasoning samples."""
    return _run_rows(kept, MixSource(source=str(kept)))


def _run_rows(kept: Path, src: MixSource) -> Iterator[Item]:
    from factory.storage.shards import iter_batches

    for batch in iter_batches(kept, columns=["messages", "reasoning", "answer"]):
        for row in batch.to_pylist():
            yield Item(json.loads(row["messages"]), row["reasoning"] if src.reasoning else None, row["answer"],
                       src.source, src.empty_think)


def _table_rows(src: MixSource) -> Iterator[dict[str, Any]]:
    spec = parse_source(src.source)
    if spec.kind == "hf":
        import datasets

        try:
            yield from datasets.load_dataset(spec.name, src.subset, split=src.split)
        except Exception as e:  # the library raises many types; the user needs the name and the reason
            raise FactoryError(f"distill.mix: {src.source}: could not load: {type(e).__name__}: {e}") from None
        return
    if not Path(src.source).is_file():
        raise FactoryError(f"distill.mix: {src.source}: no such file")
    if src.source.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(src.source).to_pylist()
        return
    with open(src.source, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise FactoryError(f"{src.source}:{lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def _row_item(row: dict[str, Any], src: MixSource, where: str) -> Item:
    from factory.teachers.reasoning import split_reasoning

    if isinstance(row.get("messages"), list) and row["messages"]:
        *context, last = row["messages"]
        if last.get("role") != "assistant" or not context:
            raise FactoryError(f"{where}: `messages` must end with an assistant turn after the prompt")
        reasoning, answer, _ = split_reasoning(str(last.get("content") or ""), untagged="answer")
        return Item(context, (reasoning or "") if src.reasoning else None, answer, src.source, src.empty_think)
    prompt = next((row[k] for k in PROMPT_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    response = next((row[k] for k in RESPONSE_KEYS if isinstance(row.get(k), str)), None)
    if prompt is None or response is None:
        raise FactoryError(f"{where}: needs `messages`, or a prompt ({'/'.join(PROMPT_KEYS)}) and a response "
                           f"({'/'.join(RESPONSE_KEYS)})")
    reasoning = str(row.get("reasoning") or "") if src.reasoning else None
    return Item([{"role": "user", "content": prompt}], reasoning, response, src.source, src.empty_think)
