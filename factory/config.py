"""Typed configuration for every stage: YAML files plus `--set a.b=v` overrides; errors name the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import FactoryError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PromptsConfig(Strict):
    source: str = Field("gym:chain_sum", description="FILE.jsonl|FILE.parquet, gym:TASK, hf:NAME or humaneval")
    limit: int | None = Field(None, ge=1, description="Use at most this many prompts")
    size: int = Field(16, ge=1, description="gym: number of procedurally generated problems")
    seed: int = Field(42, description="gym: dataset seed (use different seeds for training and held-out eval)")
    split: str = Field("train", description="hf: dataset split")
    subset: str | None = Field(None, description="hf: dataset configuration name")
    problem_field: str | None = Field(None, description="hf/file: column holding the problem (auto if unset)")
    answer_field: str | None = Field(None, description="hf/file: column holding the reference answer")
    answer_from_boxed: bool = Field(False, description="hf: take the last \\boxed{} of the answer column")
    task: str | None = Field(None, description="Task for rows that name none: math, code or gym:NAME")


class Prices(Strict):
    input_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens")


class TeacherConfig(Strict):
    engine: Literal["openai", "vllm", "hf", "auto"] = Field(
        "auto", description="openai (any OpenAI-compatible server), vllm (offline engine), hf (transformers); "
        "auto picks vllm when importable, else hf")
    model: str = Field("qwen2.5-coder-0.5b", description="Served model name, local path, Hub id or bundled alias")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the API key")
    concurrency: int = Field(256, ge=1, description="openai: requests in flight")
    requests_per_minute: float | None = Field(None, gt=0, description="openai: request rate limit")
    tokens_per_minute: float | None = Field(None, gt=0, description="openai: token rate limit (prompt + max)")
    timeout_s: float = Field(600.0, gt=0, description="openai: per-request timeout")
    max_retries: int = Field(6, ge=0, description="openai: retries on 429/5xx/timeouts/connection errors")
    backoff_base_s: float = Field(1.0, gt=0, description="openai: first backoff; doubles each retry, with jitter")
    backoff_max_s: float = Field(60.0, gt=0, description="openai: longest backoff between retries")
    native_n: Literal["auto", "always", "never"] = Field(
        "auto", description="openai: ask for n choices in one request (auto: fall back when unsupported)")
    batch_size: int = Field(64, ge=1, description="vllm/hf: prompts per engine call (the unit of resume)")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="vllm: memory share for weights + KV cache (auto: 0.9 GPU, 0.35 CPU)")
    max_model_len: int | None = Field(None, ge=1, description="vllm: context length (default: from the model)")
    dtype: str = Field("auto", description="vllm/hf: weight dtype")
    client: Literal["aiohttp", "openai-sdk"] = Field(
        "aiohttp", description="openai: HTTP client; openai-sdk uses the SDK's own (slower at high concurrency)")
    headers: dict[str, str] = Field(default_factory=dict, description="openai: extra HTTP headers")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="openai: extra JSON merged into requests")
    prices: Prices | None = Field(None, description="Token prices, to report the run's cost")


class SamplingConfig(Strict):
    n: int = Field(4, ge=1, description="Samples per prompt")
    temperature: float = Field(0.6, ge=0, description="R1's recommended 0.6")
    top_p: float = Field(0.95, gt=0, le=1, description="R1's recommended 0.95")
    max_tokens: int = Field(4096, ge=1, description="Most new tokens per sample")


class TemplateConfig(Strict):
    math: str = Field("{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
                      description="User message for math and gym tasks; {problem} is replaced")
    code: str = Field("{problem}\n\nPlease reason step by step, then give your complete solution in a single "
                      "```python code block at the end.", description="User message for code tasks")
    system: str | None = Field(None, description="System message (R1 recommends none)")


class ReasoningConfig(Strict):
    untagged: Literal["answer", "reasoning", "split_at_final"] = Field(
        "split_at_final", description="Output with no <think> tags and no reasoning_content: all answer, all "
        "reasoning, or reasoning up to the last paragraph (which holds the final answer)")


class GenerateConfig(Strict):
    out: str = Field("runs/default", description="Run directory")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    shard_rows: int = Field(10_000, ge=1, description="Rows per Parquet shard")
    progress: bool = Field(True, description="Show a progress bar")

    @field_validator("out")
    @classmethod
    def _out_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a directory")
        return v


M = TypeVar("M", bound=BaseModel)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`a.b=v` pairs into a nested dict; values are parsed as YAML scalars (so 0.6 is a float, true a bool)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FactoryError(f"--set {pair!r}: expected KEY=VALUE, e.g. sampling.temperature=0.7")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FactoryError(f"--set {pair!r}: '{part}' is both a value and a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = deep_merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise FactoryError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise FactoryError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise FactoryError(f"{path}: expected a mapping at the top level")
    return data


def build(model: type[M], *layers: dict[str, Any], where: str = "config") -> M:
    """Merge layers (later wins) and validate; a bad field becomes one readable line naming it."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return model.model_validate(merged)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: field '{field}': {msg}")
        raise FactoryError("; ".join(lines)) from None


def fingerprint(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
