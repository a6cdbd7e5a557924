"""The normalised reasoning channel: one (reasoning, answer) pair whatever the teacher's convention.

Hand-written: the tag conventions (server-side `reasoning_content`, `<think>` in the text, a template that
prefilled `<think>` so only `</think>` appears, a reasoning cut off before `</think>`) are specific to R1-style
teachers and no library normalises all of them.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<think>", "</think>"
_PARAGRAPHS = re.compile(r"\n\s*\n")


def split_reasoning(text: str, reasoning_content: str | None = None, untagged: str = "split_at_final"
                    ) -> tuple[str, str, str]:
    """Returns (reasoning, answer, source) where source says which convention was found."""
    if reasoning_content and reasoning_content.strip():
        return reasoning_content.strip(), _strip_tags(text).strip(), "reasoning_content"
    open_at, close_at = text.find(OPEN), text.find(CLOSE)
    if close_at >= 0 and (open_at < 0 or open_at > close_at):
        return text[:close_at].strip(), text[close_at + len(CLOSE):].strip(), "prefilled_think"
    if open_at >= 0 and close_at > open_at:
        reasoning = text[open_at + len(OPEN):close_at]
        before = text[:open_at].strip()
        answer = text[close_at + len(CLOSE):].strip()
        return reasoning.strip(), (before + "\n\n" + answer).strip() if before else answer, "think_tags"
    if open_at >= 0:
        return text[open_at + len(OPEN):].strip(), "", "unclosed_think"
    return _split_untagged(text.strip(), untagged)


def _strip_tags(text: str) -> str:
    return text.replace(OPEN, "").replace(CLOSE, "")


def _split_untagged(text: str, mode: str) -> tuple[str, str, str]:
    if mode == "answer":
        return "", text, "untagged"
    if mode == "reasoning":
        return text, "", "untagged"
    parts = _PARAGRAPHS.split(text)
    final = next((i for i in range(len(parts) - 1, -1, -1) if "\\boxed" in parts[i] or "```" in parts[i]),
                 len(parts) - 1)
    if "```" in parts[final]:  # a code answer's block may span paragraphs: start at its opening fence
        final = _fence_start(parts, final)
    if final == 0:
        return "", text, "untagged"
    return "\n\n".join(parts[:final]).strip(), "\n\n".join(parts[final:]).strip(), "untagged"


def _fence_start(parts: list[str], i: int) -> int:
    """Index of the paragraph that opens the code block that paragraph `i` belongs to."""
    fences = sum(p.count("```") for p in parts[:i])
    while i > 0 and fences % 2 == 1:
        i -= 1
        fences -= parts[i].count("```")
    return i
