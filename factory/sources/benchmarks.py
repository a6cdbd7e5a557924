"""Eval benchmarks -> Prompts: Hub datasets (through `datasets`, or a local copy of the same columns), HumanEval,
reasoning-gym tasks on held-out seeds, and local JSONL/Parquet files in the prompt input format."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.stages import EvalSettings, PromptsConfig
from ..core.errors import FactoryError
from ..storage.records import Prompt
from .spec import is_file_spec, parse_source


@dataclass(frozen=True)
class HubBenchmark:
    hub_id: str
    split: str
    to_prompt: Callable[[str, dict[str, Any], int, EvalSettings], Prompt | None]  # None: outside the date window
    subset: str | None = None
    license: str = ""
    data_files: str | None = None  # load these files of the repo (a dataset whose loading script is not run)


def _math_row(name: str, row: dict[str, Any], i: int, cfg: EvalSettings) -> Prompt:
    problem, answer = row.get("problem"), row.get("answer")
    if not problem or answer is None:
        raise FactoryError(f"{name}: row {i} lacks 'problem' or 'answer' (columns: {', '.join(row)})")
    meta = {k: row[k] for k in ("unique_id", "id", "subject", "level", "url") if k in row}
    return Prompt(source=name, task="math", problem=str(problem), reference_answer=str(answer),
                  metadata=json.dumps(meta, default=str))


LETTERS = "ABCD"


def _gpqa_row(name: str, row: dict[str, Any], i: int, cfg: EvalSettings) -> Prompt:
    """Multiple choice, as simple-evals asks it: the options shuffled (per seed and question: the right answer is
    not always A, and another seed is another order), the order and the right letter recorded in the metadata."""
    columns = ["Question", "Correct Answer", *(f"Incorrect Answer {k}" for k in (1, 2, 3))]
    for column in columns:
        if column not in row:
            raise FactoryError(f"{name}: row {i} lacks column {column!r}")
        if row[column] is None or not str(row[column]).strip():
            raise FactoryError(f"{name}: row {i}: column {column!r} is empty")
    question, right, *wrong = (str(row[c]) for c in columns)
    choices = [c.strip() for c in [right, *wrong]]
    if right.strip() in choices[1:]:
        raise FactoryError(f"{name}: row {i}: the correct answer {right.strip()!r:.60} is also listed as an "
                           "incorrect one (no letter would be the right one)")
    random.Random(f"{cfg.seed}:{question}").shuffle(choices)
    letter = LETTERS[choices.index(str(right).strip())]
    body = "\n".join(f"{LETTERS[k]}) {c}" for k, c in enumerate(choices))
    return Prompt(source=name, task="choice", problem=f"{question.strip()}\n\n{body}", reference_answer=letter,
                  metadata=json.dumps({"record_id": row.get("Record ID"), "choices": choices, "seed": cfg.seed}))


def _lcb_row(name: str, row: dict[str, Any], i: int, cfg: EvalSettings) -> Prompt | None:
    from .livecodebench import lcb_prompt

    return lcb_prompt(name, row, i, cfg.date_from, cfg.date_to)


HUB = {
    "math500": HubBenchmark("HuggingFaceH4/MATH-500", "test", _math_row, license="MIT"),
    "aime24": HubBenchmark("HuggingFaceH4/aime_2024", "train", _math_row, license="MIT"),
    "aime25": HubBenchmark("yentinglin/aime_2025", "train", _math_row, license="MIT"),
    "gpqa-diamond": HubBenchmark("Idavidrein/gpqa", "train", _gpqa_row, subset="gpqa_diamond",
                                 license="CC-BY-4.0 (gated: accept the terms on the Hub first)"),
    # Its loading script is not run (datasets 4 runs none): the release files are read as JSON Lines.
    "livecodebench": HubBenchmark("livecodebench/code_generation_lite", "train", _lcb_row,
                                  data_files="hf://datasets/livecodebench/code_generation_lite/test*.jsonl",
                                  license="CC-BY-4.0"),
}


def names() -> list[str]:
    return [*HUB, "humaneval", "gym:TASK", "FILE.jsonl|FILE.parquet"]


def load_benchmark(cfg: EvalSettings) -> list[Prompt]:
    name, spec = cfg.benchmark, parse_source(cfg.benchmark)
    if name in HUB:
        prompts = _load_hub(name, HUB[name], cfg)
    elif spec.kind == "humaneval":
        from .humaneval import load_humaneval
        prompts = load_humaneval()
    elif spec.kind == "gym":
        from . import load_prompts
        prompts = load_prompts(PromptsConfig(source=name, size=cfg.size, seed=cfg.seed, gym_args=cfg.gym_args))
    elif is_file_spec(name):
        prompts = _load_file(name)
    else:
        raise FactoryError(f"unknown benchmark {name!r} (known: {', '.join(names())})")
    prompts = _exclude(prompts, cfg.exclude_runs)
    return prompts[: cfg.limit] if cfg.limit else prompts


def _load_hub(name: str, b: HubBenchmark, cfg: EvalSettings) -> list[Prompt]:
    if cfg.benchmark_path:
        rows = _local_rows(Path(cfg.benchmark_path))
    else:
        import datasets

        try:
            if b.data_files:
                rows = list(datasets.load_dataset("json", data_files=b.data_files, split=b.split))
            else:
                rows = list(datasets.load_dataset(b.hub_id, b.subset, split=b.split))
        except Exception as e:  # offline, gated or renamed: the user needs the id and the reason
            raise FactoryError(f"{name}: could not load {b.hub_id} ({type(e).__name__}: {e}); pass "
                               "benchmark_path=FILE for a local copy") from None
    try:
        prompts = [b.to_prompt(name, row, i, cfg) for i, row in enumerate(rows)]
    except FactoryError as e:
        raise FactoryError(f"{cfg.benchmark_path}: {e}" if cfg.benchmark_path else str(e)) from None
    kept = [p for p in prompts if p is not None]
    if not kept:
        raise FactoryError(f"{name}: none of its {len(rows)} problems is in the window {cfg.date_from} to "
                           f"{cfg.date_to} (date_from, date_to)")
    return kept


def _local_rows(path: Path) -> list[dict[str, Any]]:
    """A local copy of a Hub benchmark: JSON Lines, Parquet or CSV, read here (not through `datasets`, whose
    errors name neither the file nor the line)."""
    if not path.exists():
        raise FactoryError(f"{path}: no such benchmark file")
    if path.is_dir():
        raise FactoryError(f"{path}: is a directory, not a benchmark file")
    readers = {".parquet": _parquet_rows, ".jsonl": _jsonl_rows, ".json": _jsonl_rows, ".csv": _csv_rows}
    if path.suffix not in readers:
        raise FactoryError(f"{path}: unsupported benchmark file type (use .parquet, .jsonl or .csv)")
    rows = readers[path.suffix](path)
    if not rows:
        raise FactoryError(f"{path}: no rows: an empty benchmark file")
    return rows


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    from .files import jsonl_rows

    return [row for _, row in jsonl_rows(path, "benchmark")]


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise FactoryError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:160]})") from None


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:  # every column as text: a benchmark's answers are compared as written ("007" is not 7)
        names = pcsv.read_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 20)).column_names
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}))
    except (pa.ArrowException, OSError) as e:
        raise FactoryError(f"{path}: not a readable CSV file ({str(e).splitlines()[0][:160]})") from None
    return table.to_pylist()


def _load_file(path: str) -> list[Prompt]:
    from .files import load_file

    prompts = load_file(path, PromptsConfig(source=path))
    for i, p in enumerate(prompts):
        if p.task != "code" and not p.reference_answer:
            raise FactoryError(f"{path}: row {i + 1} has no answer: an eval needs a reference for every problem "
                               "(field 'answer', or 'tests' for code)")
        if p.task == "code" and not p.tests:
            raise FactoryError(f"{path}: row {i + 1} is a code task without tests")
    return prompts


def _exclude(prompts: list[Prompt], runs: list[str]) -> list[Prompt]:
    """Drops problems a training run saw, so held-out really means held out."""
    if not runs:
        return prompts
    from ..storage.rundir import RunDir
    from ..storage.shards import iter_batches

    seen: set[str] = set()
    for run in runs:
        rd = RunDir(run)
        trained = sorted(rd.root.glob(f"rl/*/{PROMPTS_SEEN}"))  # what grpo trained on
        if not (rd.traces / "manifest.json").exists() and not trained:
            raise FactoryError(f"{rd.traces}: no traces to exclude (exclude_runs names a run without generate or "
                               "grpo output)")
        if (rd.traces / "manifest.json").exists():
            for batch in iter_batches(rd.traces, columns=["problem"]):
                seen.update(" ".join(p.split()) for p in batch.column("problem").to_pylist())
        for path in trained:
            seen.update(" ".join(json.loads(line)["problem"].split()) for line in path.read_text().splitlines())
    return [p for p in prompts if " ".join(p.problem.split()) not in seen]


PROMPTS_SEEN = "prompts.jsonl"  # beside a grpo policy: the problems it trained on, one JSON object a line
