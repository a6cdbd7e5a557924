"""How many samples `factory generate` buys: a fixed n, or adaptive rejection sampling (rounds that stop per
prompt once it has enough verified traces), and the budgets that stop a run. A module of its own so the stage
config (stages.py) and the generation library both name them without importing each other."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .strict import Strict
from .teacher import MAX_N, SamplingConfig

# The filters that verify a sample while it is generated: the row filters that need neither a model (judge), nor an
# index of benchmarks (decontam), nor the rest of the run (dedup, selection).
VERIFY_FILTERS = ["format", "length", "correctness", "language", "code_block", "repetition", "identity"]


class AdaptiveConfig(Strict):
    """Adaptive rejection sampling (DART-Math's, arXiv:2407.13690): rounds of samples, verified as the filter stage
    would, until each prompt has what it needs. Off by default: R1's recipe samples a fixed n."""

    enabled: bool = Field(False, description="Sample in rounds until each prompt has `until_kept` verified traces "
                          "(or `max_n` samples), instead of a fixed n")
    policy: Literal["uniform", "prop_to_difficulty"] = Field(
        "uniform", description="uniform: `until_kept` verified traces per prompt (DART's uniform); "
        "prop_to_difficulty: more for harder prompts, in proportion to 1 - the first round's pass rate (DART's "
        "prop2diff), `until_kept` on average")
    first_n: int = Field(2, ge=1, le=MAX_N, description="Samples every prompt gets in the first round (2 "
                         "bought less than 4 for as many verified traces: bench/results/adaptive.json)")
    until_kept: int = Field(2, ge=1, le=MAX_N, description="Verified traces a prompt needs before it stops")
    max_n: int = Field(16, ge=1, le=MAX_N, description="Most samples one prompt may get; a prompt with no verified "
                       "trace by then is given up as too hard")
    give_up_after: int | None = Field(None, ge=1, le=MAX_N, description="Give a prompt up as too hard once it "
                                      "has this many samples and none verified (None: only at max_n); lower saves "
                                      "what hopeless prompts cost, and loses the hard ones a few more samples "
                                      "would have solved (bench/results/adaptive.json measures both)")
    stop_easy: bool = Field(False, description="Stop a prompt whose first-round samples all verify (too easy to "
                            "teach much), even under prop_to_difficulty's target")
    filters: list[str] = Field(default_factory=lambda: list(VERIFY_FILTERS), description="The row filters a "
                               "sample must pass to count as verified (the same functions as `factory filter`)")
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Those filters' settings, as in "
                                                "the filter section (e.g. {length: {max_tokens: 192}}); in a "
                                                "pipeline, the filter stage's own are used")
    workers: int = Field(0, ge=0, description="Processes that verify samples (0: one per core)")

    @model_validator(mode="after")
    def _consistent(self) -> AdaptiveConfig:
        if self.first_n > self.max_n:
            raise ValueError(f"first_n ({self.first_n}) is more than max_n ({self.max_n})")
        if self.until_kept > self.max_n:
            raise ValueError(f"until_kept ({self.until_kept}) is more than max_n ({self.max_n}): no prompt could "
                             "reach it")
        if self.give_up_after is not None and not self.first_n <= self.give_up_after <= self.max_n:
            raise ValueError(f"give_up_after ({self.give_up_after}) must lie between first_n ({self.first_n}) and "
                             f"max_n ({self.max_n})")
        unknown = [f for f in [*self.filters, *self.settings] if f not in VERIFY_FILTERS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} cannot verify a sample while it is generated; choose from "
                             f"{', '.join(VERIFY_FILTERS)}")
        if "correctness" not in self.filters:
            raise ValueError("filters must include correctness: a verified trace is a right one")
        return self


class GenerateSampling(SamplingConfig):
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig, description="Adaptive rejection sampling "
                                     "(off: every prompt gets n samples)")


class BudgetConfig(Strict):
    """Limits on what one run directory buys, counted over every sample of the plan it holds (so a rerun with a
    larger budget goes on where the last one stopped). Each request reserves its worst case (max_tokens a sample,
    priced) before it is sent: a run passes a token or dollar budget by at most one request's worst case."""

    max_samples: int | None = Field(None, ge=1, description="Stop after this many samples")
    max_output_tokens: int | None = Field(None, ge=1, description="Stop after this many completion tokens")
    max_usd: float | None = Field(None, gt=0, description="Stop after this many dollars (needs teacher.prices)")

    def any(self) -> bool:
        return any(v is not None for v in (self.max_samples, self.max_output_tokens, self.max_usd))
