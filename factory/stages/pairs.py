"""`factory pairs RUN_DIR` and a pipeline's `pairs` stage: preference pairs from the filter stage's verdicts.

Rejection sampling rejects most of what it buys, each trace with a reason, beside verified traces of the same
prompt: the data preference training (DPO and its kin) needs. Per prompt, pairs of the kinds asked for:
- correct_vs_wrong: chosen a verified trace, rejected one whose answer correctness judged wrong;
- correct_vs_flawed: chosen a verified trace, rejected one a quality filter rejected (`flaws`);
- short_vs_long: both verified, the chosen at most `max_length_ratio` of the rejected's tokens (conciseness).
A trace is used at most once per kind, so no trace is on both sides of a pair; a prompt left without a pair of
a kind is counted with why. Pairs are written in TRL's conversational preference format (`prompt` as messages,
`chosen`/`rejected` as assistant turns with the reasoning in R1's <think> form), with columns to slice them by.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Literal

from pydantic import Field, field_validator
from rich.console import Console

from ..config.loader import fingerprint
from ..config.strict import Strict
from ..core.chat_templates import assistant_text
from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.jsonfiles import write_json_atomic
from ..core.results import StageResult
from ..filters import FILTERS
from ..filters.basic import count_tokens
from ..storage.records import FILTERED_SCHEMA, PAIRS_SCHEMA
from ..storage.rundir import RunDir, write_resolved_config
from ..storage.shards import ShardWriter, iter_batches, read_manifest
from .estimates import Estimate, EstimateContext

console = Console(stderr=True)

KIND, ORDER = "pairs", 25
PairKind = Literal["correct_vs_wrong", "correct_vs_flawed", "short_vs_long"]
KINDS: tuple[str, ...] = ("correct_vs_wrong", "correct_vs_flawed", "short_vs_long")
QUALITY_FILTERS = ["format", "length", "language", "code_block", "repetition", "identity"]
CLI_ARGUMENT = "run_dir"
CLI_OPTIONS = ("kinds=kind", "per_prompt", "max_length_ratio", "chosen", "rejected", "seed", "out")


class PairsConfig(Strict):
    run_dir: str = Field("runs/default", description="Run directory whose filtered/ verdicts the pairs come from")
    kinds: list[PairKind] = Field(default_factory=lambda: list(KINDS), description="Which pairs: correct_vs_wrong "
                                  "(a verified trace over a wrong answer), correct_vs_flawed (over one a quality "
                                  "filter rejected), short_vs_long (a verified trace over a longer verified one)")
    per_prompt: int = Field(1, ge=1, description="Most pairs per prompt and kind (each trace used once per kind)")
    chosen: Literal["shortest", "random"] = Field("shortest", description="Which verified traces are chosen first: "
                                                  "the shortest, or random ones (seed)")
    rejected: Literal["random", "shortest", "longest"] = Field(
        "random", description="Which of the rejected-side candidates are taken first: random ones (seed), the "
        "shortest or the longest (short_vs_long: among those long enough for max_length_ratio)")
    max_length_ratio: float = Field(0.6, gt=0, lt=1, description="short_vs_long: the chosen has at most this share "
                                    "of the rejected's completion tokens")
    flaws: list[str] = Field(default_factory=lambda: list(QUALITY_FILTERS), description="correct_vs_flawed: the "
                             "filters whose rejection makes a flawed trace (a generation error, with no text, never "
                             "does)")
    seed: int = Field(0, description="Seed of the random picks (per prompt and kind, so a rerun pairs the same)")
    shard_rows: int = Field(10_000, ge=1, description="Pairs per output Parquet shard")
    out: str | None = Field(None, description="Output directory (default: RUN_DIR/pairs)")

    @field_validator("kinds")
    @classmethod
    def _some_kinds(cls, kinds: list[str]) -> list[str]:
        if not kinds:
            raise ValueError(f"no pair kind asked for (pick from {', '.join(KINDS)})")
        if len(set(kinds)) != len(kinds):
            raise ValueError("a kind is listed twice")
        return kinds

    @field_validator("flaws")
    @classmethod
    def _flaws_are_filters(cls, flaws: list[str]) -> list[str]:
        for name in flaws:
            if name not in FILTERS or name == "correctness":
                raise ValueError(f"{name!r} is not a quality filter (pick from {', '.join(QUALITY_FILTERS)}, or "
                                 f"another filter but correctness: a wrong answer is correct_vs_wrong)")
        return flaws


Config = PairsConfig


class Result(StageResult):
    """pairs/stats.json: pairs per kind, the prompts left without a pair (by kind and why), the rejected side's
    reasons, and the chosen/rejected length ratio."""

    SUMMARY = ("pairs", "by_kind")

    pairs: int
    by_kind: dict[str, int]
    prompts: int
    unpaired: dict[str, dict[str, int]]
    rejected_reasons: dict[str, int]
    median_length_ratio: float | None
    out: str
    fingerprint: str

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in (s.get("by_kind") or {}).items())
        return f"{s.get('pairs')} pairs ({kinds})"


@dataclass(frozen=True)
class Side:
    """One trace as a candidate side: where it is (filtered/kept or /rejected, its row there) and what pairing
    needs to know of it; a few dozen bytes a row (the text and verdicts are read for the paired rows only)."""

    where: str
    row: int
    prompt_id: str
    sample_index: int
    teacher: str
    tokens: int
    reason: str | None

    @property
    def key(self) -> tuple[str, int]:
        return self.where, self.row


def output_dir(cfg: PairsConfig) -> Path:
    return Path(cfg.out) if cfg.out else RunDir(cfg.run_dir).pairs


def resolve(cfg: PairsConfig) -> PairsConfig:
    return cfg


def up_to_date(cfg: PairsConfig) -> bool:
    return (output_dir(cfg) / "stats.json").exists()


def estimate(cfg: PairsConfig, ctx: EstimateContext) -> Estimate:
    return Estimate(what=f"{', '.join(cfg.kinds)}; up to {cfg.per_prompt} per prompt and kind -> {output_dir(cfg)}")


def run(cfg: PairsConfig, ctx: RunContext = DIRECT) -> Result:
    cfg = resolve(cfg)
    rd = RunDir(cfg.run_dir)
    for part in (rd.kept, rd.rejected):
        read_manifest(part)  # a run not filtered yet fails here, before anything is written
    by_prompt, order = _candidates(rd, cfg)
    pairs, unpaired = _pair_all(by_prompt, order, cfg)
    texts = _texts(rd, {side.key for pair in pairs for side in pair[1:]})
    out = output_dir(cfg)
    fp = fingerprint(cfg)
    with ShardWriter(out, PAIRS_SCHEMA, cfg.shard_rows, {"stage": "pairs", "fingerprint": fp}) as writer:
        for kind, chosen, rejected in pairs:
            writer.write_rows([_pair_row(kind, chosen, rejected, texts)])
        writer.close()
    result = _result(pairs, unpaired, len(order), out, fp)
    write_json_atomic(out / "stats.json", result.to_json())
    write_resolved_config(rd.root, KIND, cfg, ctx)
    console.print(f"pairs: {Result.describe(result.summary())} in {out}"
                  + "".join(f"\n  {k}: {n} prompts without a pair ({', '.join(f'{w} {c}' for w, c in why.items())})"
                            for k, why in unpaired.items() for n in [sum(why.values())] if n))
    return result


def _candidates(rd: RunDir, cfg: PairsConfig) -> tuple[dict[str, dict[str, list[Side]]], list[str]]:
    """Every filtered trace as a side of its prompt: verified, wrong, flawed, or of no use to a pair. `order` is
    the prompts in the order the run holds them."""
    by_prompt: dict[str, dict[str, list[Side]]] = defaultdict(lambda: defaultdict(list))
    order: dict[str, None] = {}
    columns = ["prompt_id", "sample_index", "teacher_model", "completion_tokens", "raw_completion", "reject_reason",
               "verdicts"]
    seen_correctness = False
    for (where, row), r in _filtered_rows(rd, columns):
        verdicts = json.loads(r["verdicts"])
        seen_correctness = seen_correctness or "correctness" in verdicts
        side = Side(where, row, r["prompt_id"], r["sample_index"], r["teacher_model"], count_tokens(r)[0],
                    r["reject_reason"])
        order.setdefault(side.prompt_id)
        role = _role(side.reason, verdicts, cfg.flaws)
        if role:
            by_prompt[side.prompt_id][role].append(side)
    if order and not seen_correctness:
        raise FactoryError(f"{rd.filtered}: no correctness verdicts (the filter stage's order lacks correctness): "
                           "a chosen trace must be a verified one")
    return by_prompt, list(order)


def _role(reason: str | None, verdicts: dict[str, Any], flaws: list[str]) -> str | None:
    """verified: passed every filter, kept or left out only by selection's cap, its answer checked right (not
    merely unverifiable); wrong: first rejected by correctness, its answer checked wrong; flawed: first rejected
    by one of `flaws`, with text to show."""
    correct = verdicts.get("correctness") or {}
    judged = correct.get("status") != "skip"
    if reason in (None, "selection") and correct.get("ok") and judged:
        return "verified"
    if reason == "correctness" and judged:
        return "wrong"
    if reason in flaws and (verdicts.get("format") or {}).get("reason") != "generation_error":
        return "flawed"
    return None


def _ordered(sides: list[Side], how: str, rng: random.Random) -> list[Side]:
    ranked = sorted(sides, key=lambda s: (s.tokens, s.teacher, s.sample_index))
    if how == "random":
        rng.shuffle(ranked)
    return ranked[::-1] if how == "longest" else ranked


def _pair_all(by_prompt: dict[str, dict[str, list[Side]]], order: list[str], cfg: PairsConfig
              ) -> tuple[list[tuple[str, Side, Side]], dict[str, dict[str, int]]]:
    pairs: list[tuple[str, Side, Side]] = []
    unpaired: dict[str, Counter[str]] = {kind: Counter() for kind in cfg.kinds}
    for pid in order:
        sides = by_prompt.get(pid, {})
        for kind in cfg.kinds:
            rng = random.Random(f"{cfg.seed}:{pid}:{kind}")
            made, why = _pair_prompt(kind, sides, cfg, rng)
            pairs.extend((kind, c, r) for c, r in made)
            if not made:
                unpaired[kind][why] += 1
    return pairs, {kind: dict(c) for kind, c in unpaired.items()}


def _pair_prompt(kind: str, sides: dict[str, list[Side]], cfg: PairsConfig, rng: random.Random
                 ) -> tuple[list[tuple[Side, Side]], str]:
    """One prompt's pairs of one kind, and why there are none when there are none."""
    verified = _ordered(sides.get("verified", []), cfg.chosen, rng)
    if kind != "short_vs_long":
        other = "wrong" if kind == "correct_vs_wrong" else "flawed"
        rejected = _ordered(sides.get(other, []), cfg.rejected, rng)
        why = "no verified trace" if not verified else f"no {other} trace"
        return list(zip(verified, rejected))[: cfg.per_prompt], why
    if len(verified) < 2:
        return [], "fewer than two verified traces"
    used: set[tuple[str, int]] = set()
    made: list[tuple[Side, Side]] = []
    for chosen in verified:
        if len(made) == cfg.per_prompt:
            break
        if chosen.key in used:
            continue
        longer = [s for s in verified if s.key not in used and s.key != chosen.key
                  and chosen.tokens <= cfg.max_length_ratio * s.tokens]
        if longer:
            rejected = _ordered(longer, cfg.rejected, rng)[0]
            used.update((chosen.key, rejected.key))
            made.append((chosen, rejected))
    return made, f"no two verified traces within the length ratio {cfg.max_length_ratio}"


def _texts(rd: RunDir, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The text columns of the traces in pairs only: a run's text is read once, and only what is paired is kept."""
    columns = ["messages", "reasoning", "answer", "source", "task", "verdicts"]
    return {key: r for key, r in _filtered_rows(rd, columns) if key in wanted}


def _filtered_rows(rd: RunDir, columns: list[str]) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    """Every filtered row's columns, keyed by where it is (kept or rejected, its row there): both passes over the
    shards key a trace the same way."""
    for where, path in (("kept", rd.kept), ("rejected", rd.rejected)):
        row = 0
        for batch in iter_batches(path, FILTERED_SCHEMA, columns=columns):
            for r in batch.to_pylist():
                yield (where, row), r
                row += 1


def _message(m: dict[str, Any]) -> dict[str, str]:
    return {"role": str(m.get("role")), "content": str(m.get("content") or "")}


def _turn(text: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": assistant_text(text["reasoning"] or "", text["answer"] or "")}]


def _pair_row(kind: str, chosen: Side, rejected: Side, texts: dict[tuple[str, int], dict[str, Any]]
              ) -> dict[str, Any]:
    c, r = texts[chosen.key], texts[rejected.key]
    prompt = [_message(m) for m in json.loads(c["messages"]) if m.get("role") != "assistant"]
    return {"prompt": prompt, "chosen": _turn(c), "rejected": _turn(r), "kind": kind, "prompt_id": chosen.prompt_id,
            "source": c["source"], "task": c["task"], "chosen_teacher": chosen.teacher,
            "rejected_teacher": rejected.teacher, "chosen_sample_index": chosen.sample_index,
            "rejected_sample_index": rejected.sample_index, "chosen_tokens": chosen.tokens,
            "rejected_tokens": rejected.tokens, "rejected_reason": rejected.reason,
            "chosen_verdicts": c["verdicts"], "rejected_verdicts": r["verdicts"]}


def _result(pairs: list[tuple[str, Side, Side]], unpaired: dict[str, dict[str, int]], prompts: int, out: Path,
            fp: str) -> Result:
    ratios = [c.tokens / r.tokens for _, c, r in pairs if r.tokens]
    by_kind = Counter(kind for kind, _, _ in pairs)
    return Result(pairs=len(pairs), by_kind={k: by_kind.get(k, 0) for k in unpaired}, prompts=prompts,
                  unpaired=unpaired, rejected_reasons=dict(Counter(r.reason or "verified" for _, _, r in pairs)),
                  median_length_ratio=round(median(ratios), 4) if ratios else None, out=str(out), fingerprint=fp)
