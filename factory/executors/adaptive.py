"""Adaptive rejection sampling: samples are bought in rounds and verified by the filter stage's own row filters
(in worker processes) between rounds, and each prompt stops once it has the verified traces it needs, or
reaches `max_n`, or is given up (no verified trace by `max_n`: too hard; every first sample verified, with
`stop_easy`: too easy). After DART-Math (arXiv:2407.13690): fixed-n sampling spends most on easy prompts and
leaves the hardest without a single right trace.

Every decision is a function of what the cache holds, so a rerun replays the same rounds from the cache and
buys only what is missing (a larger `until_kept` or `max_n` buys just the difference), and the samples are the
same cache entries a fixed n would use: sample i of a prompt is the same sample either way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..config.loader import describe
from ..config.stages import GenerateConfig
from ..core.errors import FactoryError
from ..core.workpool import WorkPool
from ..filters.config import FilterConfig
from ..filters.rows import init_worker, judge_batch
from ..generation.budget import Budget
from ..generation.plan import Plan, make_trace
from ..storage.cache import SampleCache
from ..storage.records import Prompt
from ..teachers import billed_tokens

Buy = Callable[[Iterable[tuple[Prompt, list[dict], list[str]]], int, str], None]  # (work, samples to buy, label)
ROWS_PER_TASK = 32


@dataclass
class PromptState:
    count: int  # sample indices in play: 0..count-1
    judged: set[int] = field(default_factory=set)  # indices verified or not, by the filters
    verified: int = 0
    first_round: tuple[int, int] | None = None  # (verified, judged) after the first round
    target: int = 0
    status: str = "active"  # reached | too_hard | too_easy | max_n | failed | budget


def verify_config(cfg: GenerateConfig) -> FilterConfig:
    a = cfg.sampling.adaptive
    try:
        return FilterConfig.model_validate({"order": a.filters, **a.settings})
    except ValidationError as e:
        raise FactoryError(describe(e, "generate", "sampling.adaptive.settings.")
                           .replace("settings.order'", "filters'")) from None


class Rounds:
    def __init__(self, cfg: GenerateConfig, work: Plan, cache: SampleCache, budget: Budget | None):
        self.cfg, self.a, self.work, self.cache, self.budget = cfg, cfg.sampling.adaptive, work, cache, budget
        self.filters = verify_config(cfg)
        self.state = {p.prompt_id: PromptState(count=self.a.first_n) for p in work.prompts}
        self.rounds: list[dict[str, Any]] = []
        self.tokens = Counter()  # prompt and completion tokens of every sample judged, for the cost per sample

    def run(self, buy: Buy) -> dict[str, Any]:
        """Rounds until no prompt needs more; returns the stats (also left in `work.counts`)."""
        pool = WorkPool(self.a.workers or _cores(), init_worker, (self.filters.model_dump(mode="json"), None, None))
        try:
            while active := [p for p in self.work.prompts if self.state[p.prompt_id].status == "active"]:
                self._round(active, buy, pool)
        finally:
            pool.close()
        self.work.counts = {pid: s.count for pid, s in self.state.items()}
        return self.stats()

    def _round(self, active: list[Prompt], buy: Buy, pool: WorkPool) -> None:
        number = len(self.rounds) + 1
        for p in active:
            self.work.counts[p.prompt_id] = self.state[p.prompt_id].count
        round_work = list(self.work.over(active))
        todo = sum(k not in self.cache for _, _, keys in round_work for k in keys)
        before = sum(self.state[p.prompt_id].verified for p in active)
        if todo:
            buy(round_work, todo, f"round {number}")
        new = self._verify(round_work, pool)
        self.rounds.append({"round": number, "prompts": len(active), "requested": todo,
                            "verified": sum(self.state[p.prompt_id].verified for p in active) - before})
        if number == 1:
            self._set_targets()
        for p in active:
            self._decide(self.state[p.prompt_id], new.get(p.prompt_id, 0))

    def _verify(self, round_work: list[tuple[Prompt, list[dict], list[str]]], pool: WorkPool) -> dict[str, int]:
        """Judges the samples of this round's prompts that the cache holds and no round has judged; returns how
        many each prompt got."""
        rows, owners = [], []
        for prompt, messages, keys in round_work:
            s = self.state[prompt.prompt_id]
            for i, key in enumerate(keys):
                if i not in s.judged and key in self.cache:
                    rec = self.cache.get(key)
                    billed = billed_tokens(rec)
                    self.tokens.update(prompt=billed[0], completion=billed[1])
                    rows.append(make_trace(self.cfg, prompt, messages, i, rec, None).to_row())
                    owners.append((s, i, prompt.prompt_id))
        tasks = [(rows[i:i + ROWS_PER_TASK],) for i in range(0, len(rows), ROWS_PER_TASK)]
        judged = (j for batch in pool.map(judge_batch, tasks, 600.0, _unverified) for j in batch)
        new: Counter[str] = Counter()
        for (s, i, pid), j in zip(owners, judged):
            s.judged.add(i)
            s.verified += j is not None and j.first_failure is None
            new[pid] += 1
        return new

    def _set_targets(self) -> None:
        """After the first round: each prompt's number of verified traces to reach (uniform: `until_kept`;
        prop_to_difficulty: in proportion to 1 - its pass rate, `until_kept` on average)."""
        for s in self.state.values():
            s.first_round = (s.verified, len(s.judged))
        hardness = {pid: 1 - v / j for pid, s in self.state.items() for v, j in [s.first_round] if j}
        mean = sum(hardness.values()) / len(hardness) if hardness else 0.0
        for pid, s in self.state.items():
            target = self.a.until_kept
            if self.a.policy == "prop_to_difficulty" and mean > 0 and pid in hardness:
                target = max(1, round(self.a.until_kept * hardness[pid] / mean))
            s.target = min(target, self.a.max_n)

    def _decide(self, s: PromptState, new_samples: int) -> None:
        verified, judged = s.first_round or (0, 0)
        if self.budget is not None and self.budget.stopped:
            s.status = "budget"
        elif self.a.stop_easy and verified == judged == self.a.first_n:
            s.status = "too_easy"
        elif s.verified >= s.target:
            s.status = "reached"
        elif new_samples == 0:
            s.status = "failed"  # the teacher returned nothing for it this round (every request failed)
        elif s.count >= self.a.max_n or (s.verified == 0 and s.count >= (self.a.give_up_after or self.a.max_n)):
            s.status = "too_hard" if s.verified == 0 else "max_n"
        else:
            s.count += self._more(s)

    def _more(self, s: PromptState) -> int:
        """Samples to ask for next: enough to reach the target at the pass rate seen so far (Laplace-smoothed,
        so a prompt with none right yet still gets a chance), within max_n."""
        rate = (s.verified + 1) / (len(s.judged) + 2)
        cap = self.a.max_n
        if s.verified == 0 and self.a.give_up_after:
            cap = self.a.give_up_after  # no further than where it would be given up
        return max(1, min(math.ceil((s.target - s.verified) / rate), cap - s.count))

    def stats(self) -> dict[str, Any]:
        states = list(self.state.values())
        bought = sum(len(s.judged) for s in states)
        fixed = len(states) * self.a.max_n
        out: dict[str, Any] = {
            "policy": self.a.policy, "first_n": self.a.first_n, "until_kept": self.a.until_kept,
            "max_n": self.a.max_n, "give_up_after": self.a.give_up_after, "stop_easy": self.a.stop_easy,
            "filters": self.a.filters, "rounds": self.rounds,
            "samples_bought": bought, "samples_fixed_max_n": fixed,
            "saved_share": round(1 - bought / fixed, 4) if fixed else 0.0,
            "prompts_by_status": dict(Counter(s.status for s in states)),
            "prompts_with_verified": {f">={k}": sum(s.verified >= k for s in states)
                                      for k in sorted({1, self.a.until_kept})},
            "samples_per_prompt": _histogram(len(s.judged) for s in states),
            "verified_per_prompt": _histogram(s.verified for s in states),
            "target_per_prompt": _histogram(s.target for s in states)}
        out.update(self._cost_saved(bought, fixed))
        return out

    def _cost_saved(self, bought: int, fixed: int) -> dict[str, Any]:
        """Completion tokens (and dollars, given prices) that fixed max_n would have spent beyond this run, at the
        mean tokens of the samples bought."""
        if not bought:
            return {}
        per = {k: v / bought for k, v in self.tokens.items()}
        saved = {"completion_tokens_saved": round(per.get("completion", 0) * (fixed - bought))}
        prices = self.cfg.teacher.prices
        if prices:
            usd = (per.get("prompt", 0) * prices.input_per_mtok + per.get("completion", 0) * prices.output_per_mtok)
            saved["cost_saved_usd"] = round(usd * (fixed - bought) / 1e6, 4)
        return saved


def _histogram(values: Iterable[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


def _unverified(task: tuple) -> list[None]:
    return [None] * len(task[0])  # a verification that hung: its samples count as not verified


def _cores() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)))
