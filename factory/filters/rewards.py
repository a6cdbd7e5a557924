"""GRPO rewards are the filters: accuracy is the correctness filter (math-verify, reasoning-gym's scorers, the code
sandbox), format the format filter, language consistency the language filter's measure (R1: the share of the
reasoning in the target language), plus DAPO's soft overlong penalty. A completion is split into reasoning and
answer exactly as a teacher's trace is, so a reward and a filter verdict never disagree.

Scoring runs in worker processes (math-verify times out with SIGALRM, which needs a main thread; the sandbox may
take seconds) and is cached by (prompt, completion) hash: TRL asks each reward separately, and a small policy
often writes the same completion twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config.strict import Strict
from ..storage.records import PROMPT_FIELDS, prompt_from_row
from ..teachers.reasoning import split_reasoning
from .basic import FormatParams, format_filter
from .correctness import CorrectnessParams, correctness_filter
from .language import LanguageParams, language_filter


class AccuracyReward(Strict):
    weight: float = Field(1.0, ge=0, description="Weight (0: off). 1 when the correctness filter passes, else 0")
    correctness: CorrectnessParams = Field(default_factory=CorrectnessParams,
                                           description="The correctness filter's settings (math-verify, gym, sandbox)")


class FormatReward(Strict):
    weight: float = Field(1.0, ge=0, description="Weight (0: off). 1 when the format filter passes: reasoning in "
                          "<think></think>, then a non-empty answer")
    format: FormatParams = Field(default_factory=lambda: FormatParams(require_think_tags=True),
                                 description="The format filter's settings (answer_tags=true: the answer in "
                                 "<answer></answer>, as the R1-Zero template asks)")


class LanguageReward(Strict):
    weight: float = Field(0.0, ge=0, description="Weight (0: off; R1's reasoning RL used it). The share of the "
                          "reasoning in the target language, as the language filter measures it")
    language: LanguageParams = Field(default_factory=LanguageParams, description="The language filter's settings")


class LengthReward(Strict):
    weight: float = Field(0.0, ge=0, description="Weight (0: off). DAPO's soft overlong penalty: 0 up to "
                          "max_completion_length - buffer, then down linearly to -1 at the limit")
    buffer: int = Field(512, ge=1, description="Tokens before the limit where the penalty begins")


class RewardsConfig(Strict):
    accuracy: AccuracyReward = Field(default_factory=AccuracyReward)
    format: FormatReward = Field(default_factory=FormatReward)
    language: LanguageReward = Field(default_factory=LanguageReward)
    length: LengthReward = Field(default_factory=LengthReward)
    workers: int = Field(0, ge=0, description="Processes scoring completions (0: one per core; math-verify's "
                         "timeout needs a process of its own)")
    timeout_s: float = Field(120.0, gt=0, description="Longest a worker may spend on one batch of completions; past "
                             "it, the batch's rewards are 0 (accuracy) and the worker is replaced")
    control: Literal["none", "shuffled"] = Field(
        "none", description="shuffled: the control arm of an RL claim (Spurious Rewards, 2025, saw Qwen models "
        "gain from random rewards). Every reward is scored as usual, then shuffled among the completions of the "
        "same prompt in the step: the same values, mean and spread, but no word on which completion earned them. "
        "rollouts.jsonl keeps the true ones")

    def active(self) -> dict[str, float]:
        return {name: getattr(self, name).weight for name in ("accuracy", "format", "language", "length")
                if getattr(self, name).weight > 0}


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def completion_row(prompt: Mapping[str, Any], completion: str, tokens: int, limit: int) -> dict[str, Any]:
    """A completion as a trace row (the filters' input): reasoning and answer split as for a teacher's output."""
    reasoning, answer, source = split_reasoning(completion, None, "split_at_final")
    if source == "think_tags":  # the answer is what follows the reasoning; text before <think> is not one
        answer = completion[completion.find("</think>") + len("</think>"):].strip()
    truncated = tokens >= limit
    return {**{k: prompt[k] for k in PROMPT_FIELDS}, "reasoning": reasoning, "answer": answer,
            "raw_completion": completion, "reasoning_source": source, "truncated": truncated,
            "finish_reason": "length" if truncated else "stop", "completion_tokens": tokens, "error": None}


def score(row: Mapping[str, Any], limit: int, cfg: RewardsConfig) -> dict[str, float | None]:
    """Every active reward of one completion; None where a reward cannot judge it (no reference answer)."""
    prompt = prompt_from_row(row)
    out: dict[str, float | None] = {}
    weights = cfg.active()
    if "accuracy" in weights:
        inner = _ANSWER.search(row["answer"]) if cfg.format.format.answer_tags else None
        judged = {**row, "answer": inner.group(1)} if inner else row  # the box inside <answer></answer>
        v = correctness_filter(judged, prompt, cfg.accuracy.correctness)
        out["accuracy"] = None if v.status == "skip" else float(v.status == "pass")  # no reference: no signal
    if "format" in weights:
        out["format"] = float(format_filter(row, prompt, cfg.format.format).ok)
    if "language" in weights:
        v = language_filter(row, prompt, cfg.language.language)
        out["language"] = 1.0 - (v.score or 0.0)  # the filter's score is the share in other languages
    if "length" in weights:
        out["length"] = overlong_penalty(int(row["completion_tokens"]), limit, cfg.length.buffer)
    return out


def overlong_penalty(tokens: int, limit: int, buffer: int) -> float:
    """DAPO's soft overlong punishment: 0 until limit - buffer, then linear down to -1 at the limit."""
    start = limit - buffer
    if tokens <= start:
        return 0.0
    return max(-1.0, (start - tokens) / buffer)


def score_batch(rows: list[dict[str, Any]], limit: int, cfg_json: dict[str, Any]) -> list[dict[str, float | None]]:
    """The worker's task: a batch of completions (small: text and the prompt's columns)."""
    cfg = RewardsConfig.model_validate(cfg_json)
    return [score(row, limit, cfg) for row in rows]


def cache_key(prompt_id: str, completion: str) -> str:
    return hashlib.sha256(f"{prompt_id}\n{completion}".encode()).hexdigest()


class RewardScorer:
    """Scores completions once each, in worker processes, and hands TRL one reward function per active reward
    (`functions()`), each named as its reward so TRL logs `rewards/accuracy/mean` and the like."""

    def __init__(self, cfg: RewardsConfig, limit: int, workers: int = 1, log: Path | None = None):
        from ..core.workpool import WorkPool

        self.cfg, self.limit, self.workers, self.log = cfg, limit, max(1, workers), log
        self.cache: dict[str, dict[str, float | None]] = {}
        self.scored = 0  # completions actually scored (the rest came from the cache)
        self.logged_step: int | None = None
        self.timed_step: int | None = None
        self.rollouts_ready_at: float | None = None  # perf_counter when the step's first reward call came
        # One pool for the trainer's life, its workers forked from a clean server process: never a pool per
        # step forked from a trainer that holds CUDA.
        self.pool = WorkPool(self.workers) if self.workers > 1 else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def functions(self) -> list[Any]:
        return [_RewardFunction(self, name) for name in self.cfg.active()]

    def weights(self) -> list[float]:
        return list(self.cfg.active().values())

    def scores(self, completions: list[str], completion_ids: list[list[int]], columns: Mapping[str, list],
               step: int | None = None) -> list[dict[str, float | None]]:
        if step != self.timed_step:  # TRL generates a step's rollouts, then calls the rewards: the split point
            self.timed_step, self.rollouts_ready_at = step, time.perf_counter()
        keys = [cache_key(pid, text) for pid, text in zip(columns["prompt_id"], completions)]
        todo = {}
        for i, key in enumerate(keys):
            if key not in self.cache and key not in todo:
                prompt = {c: columns[c][i] for c in PROMPT_FIELDS}
                todo[key] = completion_row(prompt, completions[i], len(completion_ids[i]), self.limit)
        if todo:
            for key, result in zip(todo, self._score(list(todo.values()))):
                self.cache[key] = result
            self.scored += len(todo)
        results = [self.cache[k] for k in keys]
        given = shuffled(results, columns["prompt_id"], keys, step) if self.cfg.control == "shuffled" else results
        if self.log is not None and step is not None and step != self.logged_step:
            self.logged_step = step  # each reward function asks for the same batch: log it once
            self._write_log(step, columns["prompt_id"], completions, completion_ids, given, results)
        return given

    def _write_log(self, step: int, pids: list[str], texts: list[str], ids: list[list[int]],
                   given: list[dict[str, float | None]], true: list[dict[str, float | None]]) -> None:
        """rollouts.jsonl: every completion with its prompt, length and rewards (model output: data, never run);
        under a control, the rewards given and the true ones."""
        with open(self.log, "a", encoding="utf-8") as f:
            for pid, text, tokens, rewards, own in zip(pids, texts, ids, given, true):
                row = {"step": step, "prompt_id": pid, "tokens": len(tokens), "rewards": rewards}
                if given is not true:
                    row["true_rewards"] = own
                f.write(json.dumps({**row, "completion": text}, ensure_ascii=False) + "\n")

    def _score(self, rows: list[dict[str, Any]]) -> list[dict[str, float | None]]:
        cfg_json = self.cfg.model_dump(mode="json")
        if self.pool is None:
            return score_batch(rows, self.limit, cfg_json)
        size = -(-len(rows) // self.workers)
        chunks = [(rows[i:i + size], self.limit, cfg_json) for i in range(0, len(rows), size)]
        hung = lambda task: [{n: 0.0 for n in self.cfg.active()} for _ in task[0]]  # noqa: E731
        return [r for chunk in self.pool.map(score_batch, chunks, self.cfg.timeout_s, hung) for r in chunk]


def shuffled(results: list[dict[str, float | None]], prompt_ids: list[str], keys: list[str],
             step: int | None) -> list[dict[str, float | None]]:
    """The rewards permuted among the completions of each prompt. The permutation depends only on the step and
    the completions, so every reward function TRL calls for the same batch sees the same one."""
    import random

    rng = random.Random(hashlib.sha256(f"{step}\n{''.join(keys)}".encode()).hexdigest())
    out = list(results)
    for pid in dict.fromkeys(prompt_ids):
        where = [i for i, p in enumerate(prompt_ids) if p == pid]
        order = rng.sample(where, len(where))
        for i, j in zip(where, order):
            out[i] = results[j]
    return out


class _RewardFunction:
    """One named reward, as TRL calls it: (prompts, completions, completion_ids, **dataset columns)."""

    def __init__(self, scorer: RewardScorer, name: str):
        self.scorer, self.__name__ = scorer, name

    def __call__(self, prompts: list, completions: list, completion_ids: list, **columns: Any) -> list[float | None]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]  # chat: the assistant turn
        state = columns.pop("trainer_state", None)
        step = state.global_step if state is not None else None
        return [s.get(self.__name__) for s in self.scorer.scores(texts, completion_ids, columns, step)]
