"""A prompt source as written (`gym:chain_sum`, `hf:AI-MO/NuminaMath-CoT`, `humaneval`, `FILE.jsonl`): parsed
here once, for the loaders, the eval benchmarks, the pipeline's plan and the card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SourceKind = Literal["gym", "hf", "humaneval", "file"]
HUMANEVAL_PROBLEMS = 164
FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet")

LICENSES = {"gym": "Apache-2.0 (reasoning-gym, procedurally generated)", "humaneval": "MIT (openai/human-eval)",
            "hf": "see the source dataset's card", "file": "as provided by the dataset's author"}
LICENSE_IDS = {"gym": "apache-2.0", "humaneval": "mit"}  # the card's front matter; "other" for the rest


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    name: str  # the gym task, the Hub dataset id, the file's path; "humaneval"
    text: str  # as written

    @property
    def license(self) -> str:
        return LICENSES[self.kind]

    @property
    def license_id(self) -> str:
        return LICENSE_IDS.get(self.kind, "other")

    def known_size(self, gym_size: int) -> int | None:
        """How many problems it holds, when that is known without loading it (a Hub dataset's is not)."""
        if self.kind == "gym":
            return gym_size
        if self.kind == "humaneval":
            return HUMANEVAL_PROBLEMS
        path = Path(self.name)
        if self.kind == "file" and path.is_file() and path.suffix != ".parquet":
            with open(path, "rb") as f:
                return sum(1 for line in f if line.strip())
        return None


def parse_source(text: str) -> SourceSpec:
    """`gym:TASK`, `hf:NAME`, `humaneval`, else a file path (checked when it is read)."""
    if text.startswith("gym:"):
        return SourceSpec("gym", text[4:], text)
    if text.startswith("hf:"):
        return SourceSpec("hf", text[3:], text)
    if text == "humaneval":
        return SourceSpec("humaneval", text, text)
    return SourceSpec("file", text, text)


def is_file_spec(text: str) -> bool:
    """A file by its suffix (eval benchmarks and mixtures accept files, not every source kind)."""
    return parse_source(text).kind == "file" and Path(text).suffix in FILE_SUFFIXES
