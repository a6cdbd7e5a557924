"""Budgets that stop a generate run: samples, completion tokens, dollars. Counted over every sample of the plan
the run directory holds (cached ones too), so a rerun with a larger budget goes on from where the last stopped.

The sample budget is exact (a request is cut to the samples left). For tokens and dollars, each request reserves
its worst case before it is sent (max_tokens for each sample, and a prompt of one token per character, priced)
and gives back what it did not use when its samples come in; a request goes out only while what was bought plus
what is reserved is under the budget. So a run passes a token or dollar budget by at most one request's worst
case, at any concurrency. A teacher that can wait (`waits_for_room`: the API client, whose workers can sleep)
waits for what is in flight to come back before sending more; one that cannot stops there (a rerun goes on)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from ..config.sampling import BudgetConfig
from ..config.teacher import Prices
from ..teachers import PAUSE, Completion, Request, billed_tokens


@dataclass
class Spend:
    samples: int = 0
    prompt_tokens: float = 0
    completion_tokens: float = 0

    def usd(self, prices: Prices | None) -> float:
        if prices is None:
            return 0.0
        return (self.prompt_tokens * prices.input_per_mtok + self.completion_tokens * prices.output_per_mtok) / 1e6


class Budget:
    def __init__(self, cfg: BudgetConfig, prices: Prices | None, max_tokens: int = 0):
        self.cfg, self.prices, self.max_tokens = cfg, prices, max_tokens
        self.spent = Spend()  # bought (and, for samples, admitted)
        self.reserved = Spend()  # the worst case of the samples in flight, tokens only
        self.stopped: str | None = None  # the line that says which budget stopped the run

    @property
    def counts_tokens(self) -> bool:
        """Whether the cached samples' tokens must be read (only a token or dollar budget needs them)."""
        return self.cfg.max_output_tokens is not None or self.cfg.max_usd is not None

    def add_cached(self, rec: dict | None) -> None:
        """A sample the run already holds (rec: its cache record, or None when only samples are counted)."""
        self.spent.samples += 1
        if rec is not None:
            self._add_tokens(rec)

    def record(self, c: Completion, req: Request | None = None) -> None:
        """A finished sample: its reservation (of `req`) is given back and what it used is counted; a failed one
        frees its place in the sample budget (nothing was bought)."""
        if req is not None and self.counts_tokens:
            prompt, completion = self._worst_case(req)
            self.reserved.samples -= 1
            self.reserved.prompt_tokens -= prompt
            self.reserved.completion_tokens -= completion
        if c.error:
            self.spent.samples -= 1
            return
        self._add_tokens(c)

    def _add_tokens(self, x: Completion | dict) -> None:
        prompt, completion = billed_tokens(x)
        self.spent.prompt_tokens += prompt
        self.spent.completion_tokens += completion

    def _worst_case(self, req: Request) -> tuple[float, float]:
        """One sample's most: every token it may write, and a prompt of one token per character (no tokenizer
        makes more tokens than characters of ordinary text; a request's prompt is billed per sample at worst)."""
        return float(sum(len(m.get("content") or "") for m in req.messages)), float(self.max_tokens)

    def reached(self) -> str | None:
        """Which budget is spent, counting what is reserved in flight, as a line; None while every one has room."""
        c, s, r = self.cfg, self.spent, self.reserved
        committed = Spend(s.samples, s.prompt_tokens + r.prompt_tokens, s.completion_tokens + r.completion_tokens)
        if c.max_samples is not None and s.samples >= c.max_samples:
            return "budget.max_samples"
        if c.max_output_tokens is not None and committed.completion_tokens >= c.max_output_tokens:
            return "budget.max_output_tokens"
        if c.max_usd is not None and committed.usd(self.prices) >= c.max_usd:
            return "budget.max_usd"
        return None

    def summary(self) -> str | None:
        """The line the run ends with: which budget stopped it, and what was really bought (not what was
        reserved), against the limit."""
        c, s = self.cfg, self.spent
        if self.stopped == "budget.max_samples":
            return f"budget.max_samples reached: {s.samples:,} samples of {c.max_samples:,}"
        if self.stopped == "budget.max_output_tokens":
            return (f"budget.max_output_tokens reached: {s.completion_tokens:,.0f} completion tokens bought of "
                    f"{c.max_output_tokens:,}")
        if self.stopped == "budget.max_usd":
            return f"budget.max_usd reached: ${s.usd(self.prices):,.4f} bought of ${c.max_usd:,.2f}"
        return None

    def admit(self, requests: Iterable[Request], can_wait: bool = False) -> Iterator[Request]:
        """The requests, while every budget has room; the sample budget cuts the last one to what is left. With
        `can_wait`, PAUSE while the room is held by samples in flight (their unused reservation may free it)."""
        for req in requests:
            while (why := self.reached()) is not None:
                if not (can_wait and self.reserved.samples > 0 and why != "budget.max_samples"):
                    self.stopped = why
                    return
                yield PAUSE
            room = len(req.sample_indices)
            if self.cfg.max_samples is not None:
                room = min(room, self.cfg.max_samples - self.spent.samples)
            self.spent.samples += room
            admitted = req if room == len(req.sample_indices) else replace(req, sample_indices=req.sample_indices[:room])
            self._reserve(admitted)
            yield admitted
            if room < len(req.sample_indices):  # the sample budget ran out inside this request
                self.stopped = self.reached()
                return

    def _reserve(self, req: Request) -> None:
        if not self.counts_tokens:
            return
        prompt, completion = self._worst_case(req)
        count = len(req.sample_indices)
        self.reserved.samples += count
        self.reserved.prompt_tokens += prompt * count
        self.reserved.completion_tokens += completion * count
