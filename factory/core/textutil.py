"""Small text helpers shared by sources and filters."""

from __future__ import annotations


def _box_at(text: str, start: int) -> tuple[str, int] | None:
    """The content of the \\boxed{...} starting at `start` (braces balanced) and the index after it."""
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j], j + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (braces balanced). Hand-written: a dozen lines, no library offers it alone."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    found = _box_at(text, start)
    return found[0] if found else None


def all_boxed(text: str) -> list[tuple[str, int, int]]:
    """Every \\boxed{...} in the text, in order: (content, start, end)."""
    out, start = [], text.find("\\boxed")
    while start >= 0:
        found = _box_at(text, start)
        if found is None:
            break
        out.append((found[0], start, found[1]))
        start = text.find("\\boxed", found[1])
    return out
