"""Filters that judge a trace against the rest of the run: dedup (exact and MinHash LSH) and selection.

They run on a compact per-row summary (prompt, tokens, keys), never on the traces themselves, so memory stays
flat in the length of the traces.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from ..config.strict import Strict
from .base import FilterSpec


class DedupParams(Strict):
    enabled: bool = Field(True, description="Reject duplicate traces within the run, keeping the shortest")
    near: bool = Field(True, description="Also near duplicates (MinHash LSH over word shingles)")
    threshold: float = Field(0.9, gt=0, le=1, description="Jaccard similarity that counts as a near duplicate")
    shingle: int = Field(5, ge=1, description="Words per shingle")
    sample_mod: int = Field(4, ge=1, description="Hash only shingles whose hash is 0 mod this (1: all)")
    num_perm: int = Field(128, ge=16, description="MinHash permutations (64 misjudged a 0.975-similar pair as 0.91)")


class SelectionParams(Strict):
    enabled: bool = Field(True, description="Keep at most max_per_prompt traces per prompt")
    max_per_prompt: int | None = Field(None, ge=1, description="Most kept traces per prompt (None: all)")
    strategy: Literal["shortest", "random", "teacher_priority"] = Field(
        "shortest", description="Which traces to keep: the shortest that passed every filter (AM-Team's "
        "shortest verified), random ones, or by teacher_priority (then the shortest)")
    teacher_priority: list[str] = Field(default_factory=list, description="Teachers' model names, preferred "
                                        "first (strategy teacher_priority); one not listed comes after them")
    seed: int = Field(0, description="Seed for the random strategy")
    max_pass_rate: float | None = Field(None, ge=0, le=1, description="Drop prompts solved more often (hard only)")

    @model_validator(mode="after")
    def _priority_named(self) -> SelectionParams:
        if self.strategy == "teacher_priority" and not self.teacher_priority:
            raise ValueError("strategy teacher_priority needs teacher_priority: [model, ...] (preferred first)")
        if self.teacher_priority and self.strategy != "teacher_priority":
            raise ValueError(f"teacher_priority is used only with strategy: teacher_priority (the strategy is "
                             f"{self.strategy})")
        return self

_SPACE = re.compile(r"\s+")


def exact_key(reasoning: str, answer: str) -> str:
    normalised = _SPACE.sub(" ", f"{reasoning}\n{answer}".lower()).strip()
    return hashlib.blake2b(normalised.encode(), digest_size=16).hexdigest()


def shingle_hashes(text: str, size: int):
    """32-bit hashes of every `size`-word shingle, combined with numpy from one crc32 per word: stable across
    processes (unlike hash()), and ~5x cheaper than hashing each joined shingle string."""
    import numpy as np

    ids = np.fromiter((zlib.crc32(w.encode()) for w in text.lower().split()), dtype=np.uint64)
    if len(ids) < size:
        return ids if len(ids) else np.zeros(1, dtype=np.uint64)
    n = len(ids) - size + 1
    acc = np.zeros(n, dtype=np.uint64)
    for j in range(size):  # polynomial rolling combination; uint64 arithmetic wraps, as intended
        acc = acc * np.uint64(1_000_003) + ids[j : j + n]
    return acc & np.uint64(0xFFFFFFFF)


def minhash(text: str, p: DedupParams):
    """A LeanMinHash: compact and picklable, so worker processes can send it back."""
    from datasketch import LeanMinHash, MinHash

    hashes = shingle_hashes(text, p.shingle)
    # Mod-k sampling: the same shingles are kept in every document, so Jaccard estimates stay unbiased, and a
    # 4k-token trace costs a quarter of the (shingles x permutations) work, which dominated the filter stage.
    sampled = hashes[hashes % p.sample_mod == 0]
    m = MinHash(num_perm=p.num_perm, seed=1, hashfunc=int)  # the values are already hashes
    m.update_batch(sampled if len(sampled) else hashes)
    return LeanMinHash(m)


@functools.lru_cache(maxsize=8)
def band_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch chooses for this threshold: its public `b` and `r`."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def lsh_bands(text: str, p: DedupParams) -> bytes:
    """The text's LSH band keys: one 8-byte hash per band of its MinHash, b*8 bytes in all. Two texts are
    near-duplicate candidates when any band key is equal, as in datasketch's MinHashLSH; keeping 8 bytes a band
    instead of the whole signature and an index of them is what keeps dedup over a million rows in memory, and
    a band key is what a cluster shuffles on."""
    bands, per_band = band_shape(p.threshold, p.num_perm)
    values = minhash(text, p).hashvalues
    return b"".join(hashlib.blake2b(values[i * per_band : (i + 1) * per_band].tobytes(), digest_size=8,
                                    salt=i.to_bytes(16, "little")).digest() for i in range(bands))


def band_keys(signature: bytes) -> list[int]:
    return [int.from_bytes(signature[i : i + 8], "little") for i in range(0, len(signature), 8)]


@dataclass(slots=True)
class RowSummary:
    prompt_id: str
    tokens: int
    passed_rows: bool  # passed every row filter
    correct: bool | None
    key: str | None = None
    signature: bytes | None = None  # LSH band keys (lsh_bands), when near-dedup is on and the row passed


def dedup(rows: list[RowSummary], p: DedupParams, shared: set[tuple[int, int]] | None = None) -> dict[int, str]:
    """Row index -> reason, for duplicates among rows that passed the row filters; the shortest is kept.
    `shared`: the (band, key) pairs two rows or more have (from a cluster's shuffle); the others are left out,
    which changes nothing, since a key no other row has can never match."""
    rejected: dict[int, str] = {}
    seen: set[str] = set()
    bands: list[set[int]] = [set() for _ in range(band_shape(p.threshold, p.num_perm)[0])] if p.near else []
    for i in sorted((i for i, r in enumerate(rows) if r.passed_rows), key=lambda i: (rows[i].tokens, i)):
        row = rows[i]
        if row.key in seen:
            rejected[i] = "duplicate"
            continue
        seen.add(row.key)
        if bands and row.signature is not None:
            keys = band_keys(row.signature)
            if shared is not None:
                keys = [k if (b, k) in shared else None for b, k in enumerate(keys)]
            if any(k in band for k, band in zip(keys, bands) if k is not None):
                rejected[i] = "near_duplicate"
                continue
            for k, band in zip(keys, bands):
                if k is not None:
                    band.add(k)
    return rejected


def pass_rates(rows: list[RowSummary]) -> dict[str, float | None]:
    graded: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        if r.correct is not None:
            graded[r.prompt_id].append(r.correct)
    return {pid: sum(v) / len(v) for pid, v in graded.items()}


def select(rows: list[RowSummary], alive: list[int], rates: dict[str, float], p: SelectionParams,
           teachers: list[str] | None = None) -> dict[int, str]:
    """Row index -> reason, for rows over the per-prompt quota or of prompts that are too easy. `teachers`: each
    row's teacher model (strategy teacher_priority)."""
    rejected: dict[int, str] = {}
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for i in alive:
        rate = rates.get(rows[i].prompt_id)
        if p.max_pass_rate is not None and rate is not None and rate > p.max_pass_rate:
            rejected[i] = "too_easy"
        else:
            by_prompt[rows[i].prompt_id].append(i)
    if p.max_per_prompt is None:
        return rejected
    rng = random.Random(p.seed)
    for indices in by_prompt.values():
        if p.strategy == "shortest":
            indices.sort(key=lambda i: (rows[i].tokens, i))
        elif p.strategy == "teacher_priority":
            rank = {t: r for r, t in enumerate(p.teacher_priority)}
            indices.sort(key=lambda i: (rank.get((teachers or [])[i], len(rank)), rows[i].tokens, i))
        else:
            rng.shuffle(indices)
        for i in indices[p.max_per_prompt :]:
            rejected[i] = "over_quota"
    return rejected


# Run by the filter stage over every row's summary, after the row filters.
DEDUP = FilterSpec("dedup", DedupParams, "set")
SELECTION = FilterSpec("selection", SelectionParams, "set")
