"""Budgets that stop a generate run: samples, completion tokens, dollars. Counted over every sample of the plan
the run directory holds (cached ones too), so a rerun with a larger budget goes on from where the last stopped.

A request is let through only while no budget is reached; the sample budget is exact (a request is cut to the
samples left), the token and dollar budgets are checked as requests are sent, so what is in flight then still
finishes and is kept (the run passes them by at most that much; nothing bought is thrown away)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from .sampling_config import BudgetConfig
from .teacher_config import Prices
from .teachers import Completion, Request, billed_tokens


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
    def __init__(self, cfg: BudgetConfig, prices: Prices | None):
        self.cfg, self.prices = cfg, prices
        self.spent = Spend()
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

    def record(self, c: Completion) -> None:
        """A finished request's sample: a failed one frees its place in the sample budget (nothing was bought)."""
        if c.error:
            self.spent.samples -= 1
            return
        self._add_tokens(c)

    def _add_tokens(self, x: Completion | dict) -> None:
        prompt, completion = billed_tokens(x)
        self.spent.prompt_tokens += prompt
        self.spent.completion_tokens += completion

    def reached(self) -> str | None:
        """Which budget is spent, as the line the run ends with; None while every one has room."""
        c, s = self.cfg, self.spent
        if c.max_samples is not None and s.samples >= c.max_samples:
            return f"budget.max_samples reached: {s.samples:,} samples of {c.max_samples:,}"
        if c.max_output_tokens is not None and s.completion_tokens >= c.max_output_tokens:
            return (f"budget.max_output_tokens reached: {s.completion_tokens:,.0f} completion tokens of "
                    f"{c.max_output_tokens:,}")
        if c.max_usd is not None and s.usd(self.prices) >= c.max_usd:
            return f"budget.max_usd reached: ${s.usd(self.prices):,.4f} of ${c.max_usd:,.2f}"
        return None

    def admit(self, requests: Iterable[Request]) -> Iterator[Request]:
        """The requests, while every budget has room; the sample budget cuts the last one to what is left."""
        for req in requests:
            why = self.reached()
            if why:
                self.stopped = why
                return
            room = len(req.sample_indices)
            if self.cfg.max_samples is not None:
                room = min(room, self.cfg.max_samples - self.spent.samples)
            self.spent.samples += room
            if room < len(req.sample_indices):  # the sample budget runs out inside this request
                yield replace(req, sample_indices=req.sample_indices[:room])
                self.stopped = self.reached()
                return
            yield req
