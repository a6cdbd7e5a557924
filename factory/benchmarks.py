"""Eval benchmarks -> Prompts: Hub datasets (through `datasets`, or a local copy of the same columns), HumanEval,
reasoning-gym tasks on held-out seeds, and local JSONL/Parquet files in the prompt input format."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import EvalConfig, PromptsConfig
from .errors import FactoryError
from .records import Prompt
from .sources.spec import is_file_spec, parse_source


@dataclass(frozen=True)
class HubBenchmark:
    hub_id: str
    split: str
    to_prompt: Callable[[str, dict[str, Any], int], Prompt]
    subset: str | None = None
    license: str = ""


def _math_row(name: str, row: dict[str, Any], i: int) -> Prompt:
    problem, answer = row.get("problem"), row.get("answer")
    if not problem or answer is None:
        raise FactoryError(f"{name}: row {i} lacks 'problem' or 'answer' (columns: {', '.join(row)})")
    meta = {k: row[k] for k in ("unique_id", "id", "subject", "level", "url") if k in row}
    return Prompt(source=name, task="math", problem=str(problem), reference_answer=str(answer),
                  metadata=json.dumps(meta, default=str))


LETTERS = "ABCD"


def _gpqa_row(name: str, row: dict[str, Any], i: int) -> Prompt:
    try:
        question, right = row["Question"], row["Correct Answer"]
        wrong = [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
    except KeyError as e:
        raise FactoryError(f"{name}: row {i} lacks column {e}") from None
    choices = [str(c).strip() for c in [right, *wrong]]
    random.Random(question).shuffle(choices)  # a fixed order per question, the right answer not always A
    letter = LETTERS[choices.index(str(right).strip())]
    body = "\n".join(f"{LETTERS[k]}) {c}" for k, c in enumerate(choices))
    problem = f"{question.strip()}\n\n{body}\n\nAnswer with the letter of the correct choice."
    return Prompt(source=name, task="math", problem=problem, reference_answer=letter,
                  metadata=json.dumps({"record_id": row.get("Record ID"), "choices": choices}))


HUB = {
    "math500": HubBenchmark("HuggingFaceH4/MATH-500", "test", _math_row, license="MIT"),
    "aime24": HubBenchmark("HuggingFaceH4/aime_2024", "train", _math_row, license="MIT"),
    "aime25": HubBenchmark("yentinglin/aime_2025", "train", _math_row, license="MIT"),
    "gpqa-diamond": HubBenchmark("Idavidrein/gpqa", "train", _gpqa_row, subset="gpqa_diamond",
                                 license="CC-BY-4.0 (gated: accept the terms on the Hub first)"),
}


def names() -> list[str]:
    return [*HUB, "humaneval", "gym:TASK", "FILE.jsonl|FILE.parquet"]


def load_benchmark(cfg: EvalConfig) -> list[Prompt]:
    name, spec = cfg.benchmark, parse_source(cfg.benchmark)
    if name in HUB:
        prompts = _load_hub(name, HUB[name], cfg.benchmark_path)
    elif spec.kind == "humaneval":
        from .sources.humaneval import load_humaneval
        prompts = load_humaneval()
    elif spec.kind == "gym":
        from .sources import load_prompts
        prompts = load_prompts(PromptsConfig(source=name, size=cfg.size, seed=cfg.seed, gym_args=cfg.gym_args))
    elif is_file_spec(name):
        prompts = _load_file(name)
    else:
        raise FactoryError(f"unknown benchmark {name!r} (known: {', '.join(names())})")
    prompts = _exclude(prompts, cfg.exclude_runs)
    return prompts[: cfg.limit] if cfg.limit else prompts


def _load_hub(name: str, b: HubBenchmark, local: str | None) -> list[Prompt]:
    if local:
        rows = _local_rows(Path(local))
    else:
        import datasets

        try:
            rows = list(datasets.load_dataset(b.hub_id, b.subset, split=b.split))
        except Exception as e:  # offline, gated or renamed: the user needs the id and the reason
            raise FactoryError(f"{name}: could not load {b.hub_id} ({type(e).__name__}: {e}); pass "
                               "benchmark_path=FILE for a local copy") from None
    return [b.to_prompt(name, row, i) for i, row in enumerate(rows)]


def _local_rows(path: Path) -> list[dict[str, Any]]:
    import datasets

    if not path.exists():
        raise FactoryError(f"{path}: no such benchmark file")
    kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(path.suffix)
    if kind is None:
        raise FactoryError(f"{path}: unsupported benchmark file type (use .parquet, .jsonl or .csv)")
    return list(datasets.load_dataset(kind, data_files=str(path), split="train"))


def _load_file(path: str) -> list[Prompt]:
    from .sources.files import load_file

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
    from .rundir import RunDir
    from .shards import iter_batches

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
