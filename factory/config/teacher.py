"""How a model is asked: the teacher's engine and server, and its sampling. Its own module because both the
stage configs (factory/config/stages.py) and the filters' settings (the judge's model) use it."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .strict import Strict


class Prices(Strict):
    input_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens")
    batch_discount: float = Field(0.5, gt=0, le=1, description="Share of these prices a batch API charges "
                                  "(OpenAI's and Anthropic's batch prices are half)")


DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai SDK's default server
OWNED_BY_FACTORY = {  # request keys the factory writes, and where each is set instead
    "n": "the samples per prompt are sampling.n (the factory asks for them and keeps each one)",
    "model": "set teacher.model", "messages": "the prompt template writes them (template.*)",
    "stream": "the factory reads whole answers", "max_tokens": "set sampling.max_tokens",
    "temperature": "set sampling.temperature", "top_p": "set sampling.top_p",
}


class TeacherConfig(Strict):
    engine: Literal["openai", "vllm", "llamacpp", "hf", "auto"] = Field(
        "auto", description="openai (any OpenAI-compatible server), vllm (offline engine), llamacpp (llama.cpp's "
        "server on a GGUF file or bundled model), hf (transformers); auto picks llamacpp for a GGUF model on a CPU "
        "without native bf16 once setup has built it (faster there: bench/results/llama_cpp.json), else vllm when "
        "importable, else hf")
    model: str = Field("qwen2.5-coder-0.5b", description="Served model name, local path, Hub id or bundled alias")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the API key")
    cache_identity: Literal["endpoint", "model"] = Field(
        "endpoint", description="openai: what names a sample in the cache: the model at its endpoint (host, port "
        "and path of base_url; never a credential), so two servers of one model name are each asked; or the model "
        "name alone, for one model behind several URLs (mirrors, a load balancer) that may share its samples")
    concurrency: int = Field(256, ge=1, description="openai: requests in flight")
    requests_per_minute: float | None = Field(None, gt=0, description="openai: request rate limit")
    tokens_per_minute: float | None = Field(None, gt=0, description="openai: token rate limit (prompt + max)")
    timeout_s: float = Field(600.0, gt=0, description="openai: per-request timeout (the whole answer)")
    connect_timeout_s: float = Field(10.0, gt=0, description="openai: longest wait for a TCP connection (a server "
                                     "whose accept queue drops connections fails fast and is retried)")
    read_timeout_s: float | None = Field(None, gt=0, description="openai: longest silence between two reads of a "
                                         "response (None: only timeout_s; without streaming a server is silent "
                                         "until the whole answer is written, so keep it above the longest one)")
    fail_fast_after: int = Field(20, ge=0, description="openai: stop the run when the first this-many requests "
                                 "all fail with the same non-retryable error, e.g. HTTP 401 (0: never)")
    max_retries: int = Field(6, ge=0, description="openai: retries on 429/5xx/timeouts/connection errors")
    backoff_base_s: float = Field(1.0, gt=0, description="openai: first backoff; doubles each retry, with jitter")
    backoff_max_s: float = Field(60.0, gt=0, description="openai: longest backoff between retries")
    native_n: Literal["auto", "always", "never"] = Field(
        "auto", description="openai: ask for n choices in one request (auto: fall back when unsupported)")
    batch_size: int = Field(64, ge=1, description="vllm/hf: prompts per engine call (the unit of resume); "
                            "llamacpp: the server's slots, sequences decoded together")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="vllm: memory share for weights + KV cache (auto: 0.9 GPU, 0.35 CPU)")
    max_model_len: int | None = Field(None, ge=1, description="vllm: context length (default: from the model); "
                                 "llamacpp: each slot's (default: max_tokens + 1,024 for the prompt)")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one replica spans (with --executor ray, "
                                      "each actor asks Ray for this many GPUs)")
    dtype: str = Field("auto", description="vllm/hf: weight dtype (vllm on a CPU: auto is bf16 where the CPU "
                       "computes it natively, else float32)")
    enforce_eager: bool | None = Field(
        None, description="vllm: skip torch.compile and CUDA graphs. Default: eager on a CPU, where compiling costs "
        "~45 s at every engine start and gains ~2% tokens/s on the quickstart (bench/results/quickstart_levers.json); "
        "compiled on a GPU")
    client: Literal["aiohttp", "openai-sdk"] = Field(
        "aiohttp", description="openai: HTTP client; openai-sdk uses the SDK's own (slower at high concurrency)")
    headers: dict[str, str] = Field(default_factory=dict, description="openai: extra HTTP headers")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="openai: extra JSON merged into requests")
    prices: Prices | None = Field(None, description="Token prices, to report the run's cost")
    batch: bool = Field(False, description="openai: buy through the provider's Batch API (half price, results "
                        "within 24 h); the batches are tracked in RUN/batches/, so a rerun picks them up by id")
    batch_max_requests: int = Field(50_000, ge=1, description="batch: most requests in one batch (OpenAI: 50,000)")
    batch_max_mb: float = Field(190.0, gt=0, description="batch: largest input file in MB (OpenAI: 200)")
    batch_poll_s: float = Field(60.0, gt=0, description="batch: seconds between two looks at the batches")
    batch_resubmits: int = Field(3, ge=0, description="batch: times the failed and expired requests are submitted "
                                 "again before they are reported as failed")

    @field_validator("extra_body")
    @classmethod
    def _no_owned_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        """extra_body is merged last into each request: a key the factory sets itself would change what is bought
        behind its back ({n: 4} pays for 4 completions and keeps 1)."""
        for key in v:
            if key in OWNED_BY_FACTORY:
                raise ValueError(f"{key!r} cannot be set in extra_body: {OWNED_BY_FACTORY[key]}")
        return v

    @field_validator("base_url")
    @classmethod
    def _a_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as e:
            raise ValueError(f"{v!r} is not a URL ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
        return v

    @model_validator(mode="before")
    @classmethod
    def _a_server_means_openai(cls, data: Any) -> Any:
        """A server's URL without an engine (`--base-url URL`) is an OpenAI-compatible server."""
        if isinstance(data, dict) and data.get("base_url") and "engine" not in data:
            return {**data, "engine": "openai"}
        return data


MAX_N = 65_536  # samples per prompt: far past any recipe (R1 used 4-64), and small enough to plan per prompt


class SamplingConfig(Strict):
    n: int = Field(4, ge=1, le=MAX_N, description=f"Samples per prompt (at most {MAX_N})")
    temperature: float = Field(0.6, ge=0, description="R1's recommended 0.6")
    top_p: float = Field(0.95, gt=0, le=1, description="R1's recommended 0.95")
    max_tokens: int = Field(32768, ge=1, description="Most new tokens per sample (R1 generated with 32,768; "
                            "set a smaller one for CPU runs)")
