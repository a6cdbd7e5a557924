"""JSONL and Parquet prompt files: `{"problem", "answer"?, "task"?, "id"?, "tests"?}` per row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config.stages import PromptsConfig
from ..core.errors import FactoryError, first_line
from ..core.textutil import last_boxed
from ..storage.records import Prompt
from .tasks import check_task

PROBLEM_KEYS = ("problem", "question", "prompt")
ANSWER_KEYS = ("answer", "reference_answer", "solution")


def load_file(path_str: str, cfg: PromptsConfig) -> list[Prompt]:
    return [p for _, p in located_file(path_str, cfg)]


def located_file(path_str: str, cfg: PromptsConfig) -> list[tuple[str, Prompt]]:
    """Each prompt with where it came from (`FILE:LINE` or `FILE: row I`), for errors that name both places."""
    path = Path(path_str)
    if not path.exists():
        raise FactoryError(f"{path}: no such prompt file (expected .jsonl or .parquet, gym:TASK, hf:NAME, humaneval)")
    if not path.is_file():
        raise FactoryError(f"{path}: is a directory, not a prompt file")
    if path.suffix == ".parquet":
        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise FactoryError(f"{path}: not a readable Parquet file ({first_line(e)})") from None
        return [(f"{path}: row {i}", row_to_prompt(r, cfg, f"{path}: row {i}", f"file:{path.name}"))
                for i, r in enumerate(rows)]
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return list(_read_jsonl(path, cfg))
    raise FactoryError(f"{path}: unsupported prompt file type {path.suffix!r} (use .jsonl or .parquet)")


def _read_jsonl(path: Path, cfg: PromptsConfig):
    for where, row in jsonl_rows(path, "prompt"):
        yield where, row_to_prompt(row, cfg, where, f"file:{path.name}")


def jsonl_rows(path: Path, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each JSON object of a JSON Lines file with where it is (`FILE:LINE`); blank lines skipped. Bad bytes, bad
    JSON or a line that is not an object: one error naming file, line and column (`kind` names the file's use)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FactoryError(f"{where}:{e.start + 1}: not UTF-8 text (byte 0x{raw[e.start]:02x}); {kind} files "
                                   "are UTF-8 JSON Lines") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))  # a column on this line, even where the line is cut short
            except json.JSONDecodeError as e:
                raise FactoryError(f"{where}:{e.colno}: invalid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise FactoryError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _check_unicode(value: Any, where: str, field: str = "") -> None:
    """JSON's `\\ud800` escapes decode to lone surrogates, which no UTF-8 writer (Parquet, HTTP) accepts: name the
    field and the character here, before anything is sent or written."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_unicode(v, where, f"{field}.{k}" if field else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_unicode(v, where, f"{field}[{i}]")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise FactoryError(f"{where}: field '{field}' holds a lone surrogate (\\u{ord(value[e.start]):04x}) at "
                               f"character {e.start + 1}: not valid Unicode text") from None


def _pick(row: dict[str, Any], preferred: str | None, keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in (preferred,) if preferred else keys:
        if row.get(key) is not None:
            return key, row[key]
    return None, None


def row_to_prompt(row: dict[str, Any], cfg: PromptsConfig, where: str, source: str) -> Prompt:
    _check_unicode(row, where)
    key, problem = _pick(row, cfg.problem_field, PROBLEM_KEYS)
    if not isinstance(problem, str) or not problem.strip():
        wanted = cfg.problem_field or "problem (or question/prompt)"
        raise FactoryError(f"{where}: missing field '{wanted}'" if problem is None
                           else f"{where}: field '{key}' must be a non-empty string")
    _, answer = _pick(row, cfg.answer_field, ANSWER_KEYS)
    if cfg.answer_from_boxed and isinstance(answer, str):
        answer = last_boxed(answer)
    tests = row.get(cfg.tests_field or "tests")
    tests = json.dumps(tests) if isinstance(tests, (dict, list)) else tests
    task = check_task(str(row.get("task") or cfg.task or ("code" if tests else "math")), where)
    used = {key, "answer", "task", "tests", cfg.answer_field, cfg.tests_field}
    meta = {k: v for k, v in row.items() if k not in used}
    return Prompt(source=source, task=task, problem=problem,
                  reference_answer=None if answer is None else str(answer),
                  tests=tests or None, metadata=json.dumps(meta, default=str, ensure_ascii=False))
