"""Cheap structural filters: format, length, code blocks in the reasoning, repetition, identity phrases."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from ..config.strict import Strict
from ..storage.records import Prompt
from .base import FilterSpec, Verdict


class FormatParams(Strict):
    enabled: bool = Field(True, description="Reject traces with a generation error, no reasoning or no answer")
    require_reasoning: bool = Field(True, description="Reject traces whose reasoning is empty")
    require_closed: bool = Field(True, description="Reject reasoning that never closed (</think> missing)")
    require_answer: bool = Field(True, description="Reject traces with an empty answer")
    require_think_tags: bool = Field(False, description="Reject reasoning not enclosed in <think></think> (R1-Zero's "
                                     "format reward; teachers that return reasoning_content pass)")
    answer_tags: bool = Field(False, description="Reject answers not enclosed in <answer></answer> (the R1-Zero "
                              "template's answer tags)")


class LengthParams(Strict):
    enabled: bool = Field(True, description="Reject traces outside [min_tokens, max_tokens]")
    min_tokens: int = Field(1, ge=0, description="Fewest completion tokens")
    max_tokens: int | None = Field(None, ge=1, description="Most completion tokens (None: the run's generation "
                                   "limit, sampling.max_tokens, so only truncation rejects on length)")
    reject_truncated: bool = Field(True, description="Reject traces cut off by the token limit")


class CodeBlockParams(Strict):
    enabled: bool = Field(True, description="Reject code blocks inside the reasoning of non-code tasks")
    min_indented_lines: int = Field(3, ge=1, description="Consecutive indented code-like lines that count as code")


class RepetitionParams(Strict):
    enabled: bool = Field(True, description="Reject degenerate loops in the reasoning")
    ngram: int = Field(10, ge=2, description="Word n-gram size")
    max_repeats: int = Field(5, ge=1, description="Most times one n-gram may occur")


class IdentityParams(Strict):
    enabled: bool = Field(True, description="Reject traces that talk about the teacher's identity")
    phrases: list[str] = Field(default_factory=lambda: [
        "I am DeepSeek", "I'm DeepSeek", "As an AI", "as a language model", "I am an AI", "I'm an AI",
        "I am ChatGPT", "developed by OpenAI", "I am Qwen", "created by Alibaba"],
        description="Case-insensitive phrases that reject a trace")

_TOKEN = re.compile(r"\w+|[^\w\s]")
_FENCE = re.compile(r"^\s*```", re.M)
_ANSWER_TAGS = re.compile(r"\s*<answer>.*</answer>\s*", re.S)
THINK_SOURCES = ("think_tags", "prefilled_think", "reasoning_content")  # teachers/reasoning.py's tagged sources
_CODE_LINE = re.compile(r"^(?: {4}|\t)\S.*(?:[=(){}\[\]:;]|\bdef\b|\breturn\b|\bimport\b)")


def count_tokens(row: Mapping[str, Any]) -> tuple[int, str]:
    if row.get("completion_tokens") is not None:
        return int(row["completion_tokens"]), "teacher"
    return len(_TOKEN.findall(row.get("raw_completion") or "")), "estimated"


def format_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    if trace.get("error"):
        return Verdict.failed("generation_error", details={"error": trace["error"][:200]})
    if p.require_reasoning and not (trace.get("reasoning") or "").strip():
        return Verdict.failed("no_reasoning")
    if p.require_closed and trace.get("reasoning_source") == "unclosed_think":
        return Verdict.failed("unclosed_think")
    if p.require_answer and not (trace.get("answer") or "").strip():
        return Verdict.failed("no_answer")
    if p.require_think_tags and trace.get("reasoning_source") not in THINK_SOURCES:
        return Verdict.failed("no_think_tags")
    if p.answer_tags and not _ANSWER_TAGS.fullmatch(trace.get("answer") or ""):
        return Verdict.failed("no_answer_tags")
    if (p.require_think_tags or p.answer_tags) and text_before_reasoning(trace):
        return Verdict.failed("answer_before_reasoning")
    return Verdict.passed()


def text_before_reasoning(trace: Mapping[str, Any]) -> bool:
    """Text before `<think>`: R1's format (and open-r1's format reward) has the reasoning first, the answer after."""
    if trace.get("reasoning_source") != "think_tags":
        return False
    raw = trace.get("raw_completion") or ""
    return bool(raw[: max(raw.find("<think>"), 0)].strip())


def length_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    tokens, how = count_tokens(trace)
    details = {"tokens": tokens, "counted_by": how}
    if p.reject_truncated and trace.get("truncated"):
        return Verdict.failed("truncated", float(tokens), details)
    if tokens < p.min_tokens:
        return Verdict.failed("too_short", float(tokens), details)
    if p.max_tokens is not None and tokens > p.max_tokens:
        return Verdict.failed("too_long", float(tokens), details)
    return Verdict.passed(score=float(tokens), details=details)


def code_block_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    if prompt.task == "code":
        return Verdict.skipped("skipped: code task")
    reasoning = trace.get("reasoning") or ""
    if _FENCE.search(reasoning):
        return Verdict.failed("fenced_code")
    run = 0
    for line in reasoning.splitlines():
        run = run + 1 if _CODE_LINE.match(line) else 0
        if run >= p.min_indented_lines:
            return Verdict.failed("indented_code")
    return Verdict.passed()


# Scripts written without spaces between words (Chinese, Japanese, Thai, ...): each character is a token, as
# spaces do not mark their words; a loop of them repeats its characters as an English loop repeats its words.
_UNSPACED = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_REPETITION_TOKEN = re.compile(f"[{_UNSPACED}]|[^\\s{_UNSPACED}]+")


def repetition_tokens(text: str) -> list[str]:
    """Words split on spaces; a character of a script written without spaces is a token of its own."""
    return _REPETITION_TOKEN.findall(text)


def repetition_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    import numpy as np

    words = repetition_tokens(trace.get("reasoning") or "")
    n = len(words) - p.ngram + 1
    if n < 1:
        return Verdict.passed(score=0.0)
    # Each word n-gram as one 64-bit rolling hash, counted by numpy: 3x faster than a Counter of tuples.
    # (hash() is fine here: the values never leave this call.)
    ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    grams = np.zeros(n, dtype=np.uint64)
    for j in range(p.ngram):
        grams = grams * np.uint64(1_000_003) + ids[j : j + n]
    values, first, counts = np.unique(grams, return_index=True, return_counts=True)
    top = int(counts.argmax())
    count = int(counts[top])
    if count > p.max_repeats:
        start = int(first[top])
        return Verdict.failed("repetition", float(count), {"ngram": " ".join(words[start : start + p.ngram])[:120]})
    return Verdict.passed(score=float(count))


def identity_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    text = f"{trace.get('reasoning') or ''}\n{trace.get('answer') or ''}".lower()
    hits = [phrase for phrase in p.phrases if phrase.lower() in text]
    return Verdict.failed("identity", details={"phrases": hits}) if hits else Verdict.passed()


# Costs from bench/results/filters.json (rows/s on one core): format, length ~170k; identity ~12k; code_block ~9k;
# repetition ~2k.
FORMAT = FilterSpec("format", FormatParams, "row", format_filter)
LENGTH = FilterSpec("length", LengthParams, "row", length_filter)
CODE_BLOCK = FilterSpec("code_block", CodeBlockParams, "row", code_block_filter)
REPETITION = FilterSpec("repetition", RepetitionParams, "row", repetition_filter, "expensive")
IDENTITY = FilterSpec("identity", IdentityParams, "row", identity_filter)
