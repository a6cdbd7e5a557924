"""Prompt and Trace records and the one pyarrow schema: the contract between stages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

PROMPT_FIELDS = ("prompt_id", "source", "task", "problem", "reference_answer", "tests", "metadata")


def make_prompt_id(source: str, problem: str) -> str:
    """Stable id: the same problem from the same source always gets the same id."""
    return hashlib.sha256(f"{source}\n{problem}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Prompt:
    source: str
    task: str
    problem: str
    reference_answer: str | None = None
    tests: str | None = None
    metadata: str = "{}"  # JSON string, kept opaque so every source can carry its own details
    prompt_id: str = ""

    def __post_init__(self) -> None:
        if not self.prompt_id:
            object.__setattr__(self, "prompt_id", make_prompt_id(self.source, self.problem))

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads(self.metadata or "{}")


@dataclass
class Trace:
    prompt: Prompt
    sample_index: int
    teacher_model: str
    engine: str
    sampling: str  # JSON
    messages: str  # JSON: the chat the teacher saw, reused verbatim by SFT
    reasoning: str = ""
    answer: str = ""
    raw_completion: str = ""
    reasoning_source: str = ""
    finish_reason: str | None = None
    truncated: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_row(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field, and traces are long strings.
        row = {k: getattr(self.prompt, k) for k in PROMPT_FIELDS}
        row.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "prompt"})
        return row


PROMPT_SCHEMA = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),
        pa.field("reference_answer", pa.string()),
        pa.field("tests", pa.string()),
        pa.field("metadata", pa.string(), nullable=False),
    ]
)

TRACE_SCHEMA = pa.schema(
    list(PROMPT_SCHEMA)
    + [
        pa.field("sample_index", pa.int32(), nullable=False),
        pa.field("teacher_model", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("sampling", pa.string(), nullable=False),
        pa.field("messages", pa.string(), nullable=False),
        pa.field("reasoning", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("raw_completion", pa.string(), nullable=False),
        pa.field("reasoning_source", pa.string(), nullable=False),
        pa.field("finish_reason", pa.string()),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("latency_s", pa.float64()),
        pa.field("error", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


# What `factory filter` writes: the traces, and for each its outcome.
FILTERED_SCHEMA = pa.schema(list(TRACE_SCHEMA) + [
    pa.field("kept", pa.bool_(), nullable=False), pa.field("reject_reason", pa.string()),
    pa.field("verdicts", pa.string(), nullable=False), pa.field("pass_rate", pa.float64())])


# A preference pair (factory pairs): TRL's conversational preference format, then columns to slice pairs by.
_TURN = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
PAIRS_SCHEMA = pa.schema([
    pa.field("prompt", _TURN, nullable=False), pa.field("chosen", _TURN, nullable=False),
    pa.field("rejected", _TURN, nullable=False), pa.field("kind", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string(), nullable=False), pa.field("source", pa.string()), pa.field("task", pa.string()),
    pa.field("chosen_teacher", pa.string()), pa.field("rejected_teacher", pa.string()),
    pa.field("chosen_sample_index", pa.int64()), pa.field("rejected_sample_index", pa.int64()),
    pa.field("chosen_tokens", pa.int64()), pa.field("rejected_tokens", pa.int64()),
    pa.field("rejected_reason", pa.string()), pa.field("chosen_verdicts", pa.string()),
    pa.field("rejected_verdicts", pa.string())])


def schema_hash(schema: pa.Schema) -> str:
    desc = [(f.name, str(f.type), f.nullable) for f in schema]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def prompt_from_row(row: dict[str, Any]) -> Prompt:
    return Prompt(**{k: row[k] for k in PROMPT_FIELDS})


def check_columns(schema: pa.Schema, required: pa.Schema, where: str) -> None:
    """Fail with the file and column when a table lacks a required column or has the wrong type."""
    from ..core.errors import FactoryError

    for f in required:
        if f.name not in schema.names:
            raise FactoryError(f"{where}: missing required column '{f.name}' ({f.type})")
        got = schema.field(f.name).type
        if got != f.type and not (pa.types.is_integer(got) and pa.types.is_integer(f.type)):
            raise FactoryError(f"{where}: column '{f.name}' has type {got}, expected {f.type}")
