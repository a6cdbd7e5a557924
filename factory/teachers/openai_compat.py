"""Any OpenAI-compatible server (vLLM, SGLang, DeepSeek, OpenAI, Together...): `/chat/completions` over
aiohttp (default) or the `openai` SDK's async client, with the SDK's sync client for the preflight check.

Retries are done here, not by a client: exponential backoff with jitter, `Retry-After` honoured, and every
failure counted by class for the progress bar and the run's report.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import openai
import orjson

try:
    import httpx2 as httpx  # openai >= 3 runs on the httpx2 fork of httpx
except ImportError:
    import httpx

from ..config import SamplingConfig, TeacherConfig
from ..errors import FactoryError
from .base import Completion, Request, Sink, Usage
from .ratelimit import TokenBucket

RETRYABLE = {"rate_limit", "server_error", "timeout", "connection", "bad_response"}


class SampleFailure(Exception):
    def __init__(self, error_class: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.error_class, self.retry_after = error_class, retry_after


def api_key(cfg: TeacherConfig) -> str:
    # Local servers need no key; the string is never logged or stored.
    return os.environ.get(cfg.api_key_env) or "EMPTY"


def preflight(cfg: TeacherConfig) -> None:
    """Fail fast, in one line, when the server is unreachable, the key is wrong or the model is not served."""
    url = cfg.base_url or "https://api.openai.com/v1"
    client = openai.OpenAI(base_url=cfg.base_url, api_key=api_key(cfg), max_retries=1, timeout=30,
                           default_headers=cfg.headers or None)
    try:
        served = [m.id for m in client.models.list()]
    except openai.AuthenticationError as e:
        why = "was refused" if os.environ.get(cfg.api_key_env) else "is not set"
        raise FactoryError(f"{url}/models: HTTP {e.status_code}: the API key in ${cfg.api_key_env} {why}") from None
    except openai.NotFoundError:
        return  # some servers have no /models route: the first request will tell
    except openai.APIStatusError as e:
        raise FactoryError(f"{url}/models: HTTP {e.status_code}: {_short(e.message)}") from None
    except (openai.APIConnectionError, openai.APIResponseValidationError, ValueError) as e:
        raise FactoryError(f"{url}: cannot reach the server ({type(e).__name__}: {_short(str(e))})") from None
    finally:
        client.close()
    if served and cfg.model not in served:
        raise FactoryError(f"{url}: model {cfg.model!r} is not served (served: {', '.join(served[:10])})")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


class OpenAITeacher:
    engine = "openai"

    def __init__(self, cfg: TeacherConfig, sampling: SamplingConfig):
        self.cfg, self.sampling = cfg, sampling
        self.model = cfg.model
        self.usage = Usage()
        self._native_n = cfg.native_n != "never"
        self._rpm = TokenBucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tpm = TokenBucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None

    def generate(self, requests: Sequence[Request], sink: Sink) -> None:
        asyncio.run(self._generate(requests, sink))

    def close(self) -> None:
        pass

    async def _generate(self, requests: Sequence[Request], sink: Sink) -> None:
        transport = AiohttpTransport(self.cfg) if self.cfg.client == "aiohttp" else SdkTransport(self.cfg)
        queue: asyncio.Queue[tuple[Request, list[int]]] = asyncio.Queue()
        for req in requests:
            for chunk in self._chunks(req.sample_indices):
                queue.put_nowait((req, chunk))
        workers = [asyncio.create_task(self._worker(transport, queue, sink))
                   for _ in range(min(self.cfg.concurrency, queue.qsize()))]
        try:
            await asyncio.gather(*workers)
        finally:
            await transport.close()

    def _chunks(self, indices: list[int]) -> list[list[int]]:
        return [indices] if self._native_n and len(indices) > 1 else [[i] for i in indices]

    async def _worker(self, client: Transport, queue: asyncio.Queue, sink: Sink) -> None:
        while not queue.empty():
            req, indices = queue.get_nowait()
            for item in await self._serve(client, req, indices, queue):
                sink(req, item)

    async def _serve(self, client, req: Request, indices: list[int], queue: asyncio.Queue) -> list[Completion]:
        """One logical request with retries; returns completions (or error completions) for `indices`."""
        for attempt in range(self.cfg.max_retries + 1):
            try:
                choices, usage, latency = await self._call(client, req, len(indices))
                break
            except SampleFailure as f:
                if f.error_class == "n_unsupported":
                    self._fall_back_to_single(req, indices, queue)
                    return []
                self.usage.fail(f.error_class)
                if f.error_class not in RETRYABLE or attempt == self.cfg.max_retries:
                    return [Completion(i, error=f"{f.error_class}: {f}", error_class=f.error_class) for i in indices]
                self.usage.retries += 1
                await asyncio.sleep(self._backoff(attempt, f.retry_after))
        if len(choices) < len(indices):  # a server that ignores n: ask again for the rest, one by one
            self._fall_back_to_single(req, indices[len(choices):], queue)
        return self._completions(choices, usage, latency, indices)

    def _fall_back_to_single(self, req: Request, indices: list[int], queue: asyncio.Queue) -> None:
        if self.cfg.native_n == "auto":
            self._native_n = False
        for i in indices:
            queue.put_nowait((req, [i]))

    def _completions(self, choices: list[dict], usage: dict, latency: float, indices: list[int]) -> list[Completion]:
        single = len(choices) == 1  # with n > 1 the server reports only the total of completion tokens
        out = []
        for index, choice in zip(indices, choices):
            msg = choice.get("message") or {}
            out.append(Completion(
                sample_index=index, text=msg.get("content") or "", finish_reason=choice.get("finish_reason"),
                reasoning_content=msg.get("reasoning_content") or msg.get("reasoning"),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens") if single else None, latency_s=latency))
        return out

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.backoff_max_s * 4) + random.uniform(0, 0.1)
        ceiling = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": spreads a thundering herd of retries

    async def _call(self, client: Transport, req: Request, n: int) -> tuple[list[dict], dict, float]:
        if self._rpm:
            await self._rpm.take(1)
        if self._tpm:
            est = sum(len(m["content"]) for m in req.messages) / 4 + self.sampling.max_tokens * n
            await self._tpm.take(est)
        body: dict[str, Any] = {"model": self.cfg.model, "messages": req.messages, "max_tokens": self.sampling.max_tokens,
                                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                                **({"n": n} if n > 1 else {}), **self.cfg.extra_body}
        start = time.perf_counter()
        data = await client.post(body, n)
        latency = time.perf_counter() - start
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise SampleFailure("bad_response", "response has no choices")
        usage = data.get("usage") or {}
        self.usage.requests += 1
        self.usage.prompt_tokens += usage.get("prompt_tokens") or 0
        self.usage.completion_tokens += usage.get("completion_tokens") or 0
        return sorted(choices, key=lambda c: c.get("index", 0)), usage, latency


class Transport(Protocol):
    async def post(self, body: dict[str, Any], n: int) -> Any:
        """POST /chat/completions; the parsed JSON, or SampleFailure with a class."""
        ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """The default: aiohttp straight to the server. Measured in bench/generate_client.py, the openai SDK's
    per-request work (option copies, a type walk of the params, httpx request models) cost ~1 ms of client CPU
    per request, 4-7x a bare aiohttp loop, and its httpx pool is O(connections) per request at 1k in flight."""

    def __init__(self, cfg: TeacherConfig):
        import aiohttp

        self.url = (cfg.base_url or "https://api.openai.com/v1").rstrip("/") + "/chat/completions"
        self.timeout = cfg.timeout_s
        headers = {"Authorization": f"Bearer {api_key(cfg)}", "Content-Type": "application/json", **cfg.headers}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.concurrency), headers=headers,
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s))

    async def post(self, body: dict[str, Any], n: int) -> Any:
        import aiohttp

        try:
            async with self.session.post(self.url, data=orjson.dumps(body)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _classify_status(resp.status, _error_message(raw), resp.headers, n)
            return orjson.loads(raw)
        except asyncio.TimeoutError:
            raise SampleFailure("timeout", f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientPayloadError as e:
            raise SampleFailure("bad_response", f"truncated response body ({_short(str(e), 80)})") from None
        except aiohttp.ClientError as e:
            raise SampleFailure("connection", _short(f"{type(e).__name__}: {e}")) from None
        except ValueError as e:
            raise SampleFailure("bad_response", f"unreadable response body ({_short(str(e), 80)})") from None

    async def close(self) -> None:
        await self.session.close()


class SdkTransport:
    """The openai SDK's client (`teacher.client: openai-sdk`), for providers that need its extras."""

    def __init__(self, cfg: TeacherConfig):
        self.timeout = cfg.timeout_s
        self.client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=api_key(cfg), max_retries=0,
                                         timeout=cfg.timeout_s, default_headers=cfg.headers or None)

    async def post(self, body: dict[str, Any], n: int) -> Any:
        try:
            raw = await self.client.post("/chat/completions", body=body, cast_to=httpx.Response)
            return json.loads(await raw.aread())
        except openai.APIStatusError as e:
            raise _classify_status(e.status_code, e.message, e.response.headers, n) from None
        except openai.APITimeoutError:
            raise SampleFailure("timeout", f"no answer within {self.timeout:g}s") from None
        except openai.APIConnectionError as e:
            raise SampleFailure("connection", _short(str(e.__cause__ or e))) from None
        except (ValueError, httpx.HTTPError) as e:
            raise SampleFailure("bad_response", f"unreadable response body ({_short(str(e), 80)})") from None

    async def close(self) -> None:
        await self.client.close()


def _error_message(raw: bytes) -> str:
    try:
        err = json.loads(raw).get("error")
        return str(err.get("message", err) if isinstance(err, dict) else err)
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")


def _classify_status(status: int, text: str, headers: Any, n: int) -> SampleFailure:
    message = f"HTTP {status}: {_short(text)}"
    if status == 429:
        return SampleFailure("rate_limit", message, _retry_after(headers))
    if status >= 500:
        return SampleFailure("server_error", message, _retry_after(headers))
    if status in (408, 409):
        return SampleFailure("timeout", message)
    if status == 400 and n > 1 and "'n'" in text.replace('"n"', "'n'"):
        return SampleFailure("n_unsupported", message)
    return SampleFailure("client_error", message)


def _retry_after(headers: Any) -> float | None:
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
