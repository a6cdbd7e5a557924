"""Decontamination: word n-gram overlap between a problem and benchmark problem sets (MATH-500, AIME, ...).

The stage builds the benchmark index once (`build_index`, which reads files); the filter itself only looks
hashes up, so it stays a pure function of (trace, prompt, params).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from ..config.stages import PromptsConfig
from ..config.strict import Strict
from ..storage.records import Prompt
from .base import FilterSpec, Verdict


class DecontamParams(Strict):
    enabled: bool = Field(True, description="Reject prompts that overlap a benchmark (skipped when none is given)")
    benchmarks: list[str] = Field(default_factory=list,
                                  description="Benchmark problem sets: an eval benchmark's name (math500, aime24, "
                                  "aime25, gpqa-diamond, humaneval), FILE.jsonl|FILE.parquet, or hf:NAME (every "
                                  "split of it)")
    ngram: int = Field(8, ge=3, description="Word n-gram size that counts as overlap")

_WORD = re.compile(r"\w+")


def ngrams(text: str, n: int) -> set[bytes]:
    """Stable 8-byte digests (not hash(): it differs between the stage and its worker processes)."""
    words = _WORD.findall(text.lower())
    return {hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).digest()
            for i in range(len(words) - n + 1)}


@dataclass
class DecontamIndex:
    params: DecontamParams
    owner: dict[bytes, str] = field(default_factory=dict)  # n-gram hash -> benchmark name
    problems: dict[str, int] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.params.enabled


def benchmark_problems(spec: str) -> list[Prompt]:
    """An eval benchmark by name (its real Hub split), else any prompt source; `hf:` sources with every split."""
    from ..sources.benchmarks import HUB

    if spec in HUB:
        from ..config.stages import EvalSettings
        from ..sources.benchmarks import load_benchmark

        return load_benchmark(EvalSettings(benchmark=spec))
    from ..sources import load_prompts

    return load_prompts(PromptsConfig(source=spec, split="all"))


def build_index(p: DecontamParams) -> DecontamIndex:
    index = DecontamIndex(p)
    for spec in p.benchmarks:
        prompts = benchmark_problems(spec)
        index.problems[spec] = len(prompts)
        for prompt in prompts:
            for h in ngrams(prompt.problem, p.ngram):
                index.owner.setdefault(h, spec)
    return index


def decontam_filter(trace: Mapping[str, Any], prompt: Prompt, index: DecontamIndex) -> Verdict:
    if not index.owner:
        return Verdict.skipped("skipped: no benchmarks")
    hits = [index.owner[h] for h in ngrams(prompt.problem, index.params.ngram) if h in index.owner]
    if hits:
        return Verdict.failed("contaminated", float(len(hits)), {"benchmark": hits[0], "ngrams": len(hits)})
    return Verdict.passed(score=0.0)


# A set lookup per row: the stage builds the index (`build_index`) and passes it as the params.
SPEC = FilterSpec("decontam", DecontamParams, "row", decontam_filter)
