"""Any OpenAI-compatible server (vLLM, SGLang, DeepSeek, OpenAI, Together...): `/chat/completions` over
aiohttp (default) or the `openai` SDK's async client, with the SDK's sync client for the preflight check.

Retries are done here, not by a client: exponential backoff with jitter, `Retry-After` honoured, and every
failure counted by class for the progress bar and the run's report.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import openai
import orjson

from ..config.teacher import DEFAULT_BASE_URL, SamplingConfig, TeacherConfig
from ..core.errors import FactoryError
from ..core.redact import redact_text, register
from .base import PAUSE, Completion, Request, Sink, Usage
from .ratelimit import TokenBucket

PAUSE_S = 0.02  # how long a worker sleeps when a budget's room is held by requests in flight
RETRYABLE = {"rate_limit", "server_error", "timeout", "connection", "bad_response"}


class SampleFailure(Exception):
    def __init__(self, error_class: str, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.error_class, self.retry_after, self.status = error_class, retry_after, status


def api_key(cfg: TeacherConfig) -> str:
    """The key from the variable the config names (local servers need none: "EMPTY"); whatever that variable is
    called, the key is masked from now on in every artifact this process writes (a server may echo it)."""
    key = os.environ.get(cfg.api_key_env)
    register(key)
    return key or "EMPTY"


def endpoint(cfg: TeacherConfig) -> tuple[str, dict[str, str]]:
    """The server's URL without credentials, and the Authorization header: `Bearer $KEY`, or Basic auth from
    credentials written in the URL (`http://user:pw@host/v1`, as proxies use). Both at once is a configuration
    error: a request carries one Authorization header."""
    parts = urlsplit(cfg.base_url or DEFAULT_BASE_URL)
    url = urlunsplit(parts._replace(query=""))  # the query goes with every request instead (url_query)
    if parts.username is None and parts.password is None:
        return url, {"Authorization": f"Bearer {api_key(cfg)}"}
    if os.environ.get(cfg.api_key_env):
        raise FactoryError(f"teacher.base_url: {redact_text(url)} has credentials and ${cfg.api_key_env} holds an "
                           "API key; a request carries one Authorization header: drop one of them")
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    user_pw = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    basic = base64.b64encode(user_pw.encode()).decode()
    return urlunsplit(parts._replace(netloc=netloc, query="")), {"Authorization": f"Basic {basic}"}


def url_query(cfg: TeacherConfig) -> dict[str, str]:
    """The base URL's query (`.../v1?api-version=2024-06-01`, as Azure-style endpoints take it): sent with every
    request, after the route, never pasted in front of it."""
    return dict(parse_qsl(urlsplit(cfg.base_url or "").query))


def sync_client(cfg: TeacherConfig, max_retries: int = 1, timeout_s: float = 30) -> openai.OpenAI:
    """The SDK's sync client for the teacher's server: its URL, key or Basic auth, headers and query."""
    url, auth = endpoint(cfg)
    return openai.OpenAI(base_url=url, api_key=api_key(cfg), max_retries=max_retries,
                         timeout=openai.Timeout(timeout_s, connect=cfg.connect_timeout_s),
                         default_headers={**auth, **cfg.headers}, default_query=url_query(cfg) or None)


def chat_body(cfg: TeacherConfig, sampling: SamplingConfig, messages: list[dict], n: int = 1) -> dict[str, Any]:
    """The /chat/completions request body for one prompt and n samples."""
    return {"model": cfg.model, "messages": messages, "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p, **({"n": n} if n > 1 else {}),
            **cfg.extra_body}


def completions_from(choices: list[dict], usage: dict, latency: float | None, indices: list[int]) -> list[Completion]:
    """A response's choices as one Completion per sample index, in order."""
    single = len(choices) == 1  # with n > 1 the server reports only the total of completion tokens
    share = None if single else ((usage.get("prompt_tokens") or 0) / len(choices),
                                 (usage.get("completion_tokens") or 0) / len(choices))
    out = []
    for index, choice in zip(indices, choices):
        msg = choice.get("message") or {}
        out.append(Completion(
            sample_index=index, text=msg.get("content") or "", finish_reason=choice.get("finish_reason"),
            reasoning_content=msg.get("reasoning_content") or msg.get("reasoning"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens") if single else None, latency_s=latency,
            billed=share))
    return out


def preflight(cfg: TeacherConfig) -> None:
    """Fail fast, in one line, when the server is unreachable, the key is wrong or the model is not served."""
    url = endpoint(cfg)[0]
    client = sync_client(cfg, max_retries=1)
    try:
        served = [m.id for m in client.models.list()]
    except openai.AuthenticationError as e:
        why = "was refused" if os.environ.get(cfg.api_key_env) else "is not set"
        raise FactoryError(f"{url}/models: HTTP {e.status_code}: the API key in ${cfg.api_key_env} {why}") from None
    except openai.NotFoundError:
        return  # some servers have no /models route: the first requests will tell (see fail_fast_after)
    except openai.APIStatusError as e:
        raise FactoryError(f"{url}/models: HTTP {e.status_code}: {_short(e.message)}") from None
    except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError) as e:
        raise FactoryError(f"{url}/models: not an OpenAI-compatible answer ({type(e).__name__}: "
                           f"{_short(str(e), 100)}); is --base-url the API root, e.g. http://host:8000/v1?") from None
    except openai.APIConnectionError as e:
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
    waits_for_room = True  # its workers sleep while a budget waits for requests in flight (teachers.PAUSE)

    def __init__(self, cfg: TeacherConfig, sampling: SamplingConfig,
                 transport: Callable[[TeacherConfig], Transport] | None = None):
        """`transport`: the HTTP client for a server with quirks of its own (llama-server's usage)."""
        self.cfg, self.sampling = cfg, sampling
        self._transport = transport
        self.model = cfg.model
        self.usage = Usage()
        self._native_n = cfg.native_n != "never"
        self._rpm = TokenBucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tpm = TokenBucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        self._succeeded = 0
        self._refusals: list[str] = []  # non-retryable failures before the first success
        self._abort: str | None = None

    def generate(self, requests: Iterable[Request], sink: Sink) -> None:
        asyncio.run(self._generate(requests, sink))
        if self._abort:
            raise FactoryError(self._abort)

    def close(self) -> None:
        pass

    async def _generate(self, requests: Iterable[Request], sink: Sink) -> None:
        """`concurrency` workers take from one iterator of (request, sample indices): requests are drawn from the
        caller's generator only as workers free up, so memory holds what is in flight, not the plan."""
        if self._transport:
            transport = self._transport(self.cfg)
        else:
            transport = AiohttpTransport(self.cfg) if self.cfg.client == "aiohttp" else SdkTransport(self.cfg)
        self._again: deque[tuple[Request, list[int]]] = deque()  # samples to ask for again, one by one
        work = self._work(iter(requests))
        workers = [asyncio.create_task(self._worker(transport, work, sink)) for _ in range(self.cfg.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            await transport.close()

    def _work(self, requests: Iterator[Request]) -> Iterator[tuple[Request, list[int]]]:
        for req in requests:
            if req is PAUSE:
                yield req, []
            elif self._native_n and len(req.sample_indices) > 1:
                yield req, req.sample_indices
            else:
                yield from ((req, [i]) for i in req.sample_indices)

    async def _worker(self, client: Transport, work: Iterator, sink: Sink) -> None:
        # One generator shared by the workers is safe: it never awaits, so only one worker is ever inside it.
        while not self._abort:
            item = self._again.popleft() if self._again else next(work, None)
            if item is None:
                return
            req, indices = item
            if req is PAUSE:  # a budget waits for what is in flight: ask again once some of it is back
                await asyncio.sleep(PAUSE_S)
                continue
            for completion in await self._serve(client, req, indices):
                sink(req, completion)

    async def _serve(self, client, req: Request, indices: list[int]) -> list[Completion]:
        """One logical request with retries; returns completions (or error completions) for `indices`."""
        for attempt in range(self.cfg.max_retries + 1):
            try:
                choices, usage, latency = await self._call(client, req, len(indices))
                self._succeeded += 1
                break
            except SampleFailure as f:
                if f.error_class == "n_unsupported":
                    self._fall_back_to_single(req, indices)
                    return []
                self.usage.fail(f.error_class)
                if f.error_class not in RETRYABLE or attempt == self.cfg.max_retries:
                    if f.error_class not in RETRYABLE:
                        self._note_refusal(f)
                    return [Completion(i, error=f"{f.error_class}: {f}", error_class=f.error_class) for i in indices]
                self.usage.retries += 1
                await asyncio.sleep(self._backoff(attempt, f.retry_after))
        if len(choices) < len(indices):  # a server that ignores n: ask again for the rest, one by one
            self._fall_back_to_single(req, indices[len(choices):])
        return completions_from(choices, usage, latency, indices)

    def _note_refusal(self, f: SampleFailure) -> None:
        """Stops the run when the first `fail_fast_after` requests were all refused alike (a wrong key, a model
        the server does not know, a route it lacks): the rest would fail the same way, and may cost money."""
        limit = self.cfg.fail_fast_after
        if not limit or self._succeeded:
            return
        self._refusals.append(f"HTTP {f.status}" if f.status else f.error_class)
        if len(self._refusals) >= limit and len(set(self._refusals[-limit:])) == 1 and not self._abort:
            url, _ = endpoint(self.cfg)
            self._abort = (f"{url}: the first {limit} requests all failed with {f.error_class}: {_short(str(f))}; "
                           "stopped without sending the rest (check the key, the model name and the URL)")

    def _fall_back_to_single(self, req: Request, indices: list[int]) -> None:
        if self.cfg.native_n == "auto":
            self._native_n = False
        self._again.extend((req, [i]) for i in indices)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.backoff_max_s * 4) + random.uniform(0, 0.1)
        ceiling = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": spreads a thundering herd of retries

    async def _call(self, client: Transport, req: Request, n: int) -> tuple[list[dict], dict, float]:
        if self._rpm:
            await self._rpm.take(1)
        charged = 0.0
        if self._tpm:
            charged = sum(len(m["content"]) for m in req.messages) / 4 + self.sampling.max_tokens * n
            await self._tpm.take(charged)
        body = chat_body(self.cfg, self.sampling, req.messages, n)
        start = time.perf_counter()
        try:
            data = await client.post(body, n)
        except SampleFailure as f:
            if self._tpm and f.error_class != "timeout":  # refused or never arrived: nothing was generated
                self._tpm.settle(charged, 0)
            raise
        latency = time.perf_counter() - start
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise SampleFailure("bad_response", "response has no choices")
        usage = data.get("usage") or {}
        if self._tpm and usage.get("completion_tokens") is not None:
            self._tpm.settle(charged, (usage.get("prompt_tokens") or 0) + usage["completion_tokens"])
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

        url, auth = endpoint(cfg)
        self.url = url.rstrip("/") + "/chat/completions"
        self.params = url_query(cfg)
        self.cfg = cfg
        headers = {**auth, "Content-Type": "application/json", **cfg.headers}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.concurrency), headers=headers,
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s,
                                          sock_read=cfg.read_timeout_s))

    async def post(self, body: dict[str, Any], n: int) -> Any:
        import aiohttp

        try:
            async with self.session.post(self.url, data=orjson.dumps(body), params=self.params) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _classify_status(resp.status, _error_message(raw), resp.headers, n)
            return orjson.loads(raw)
        except aiohttp.ConnectionTimeoutError:
            raise SampleFailure("connection", f"no connection within {self.cfg.connect_timeout_s:g}s") from None
        except aiohttp.SocketTimeoutError:
            raise SampleFailure("timeout", f"no data for {self.cfg.read_timeout_s:g}s") from None
        except asyncio.TimeoutError:
            raise SampleFailure("timeout", f"no answer within {self.cfg.timeout_s:g}s") from None
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
        url, auth = endpoint(cfg)
        timeout = openai.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s, read=cfg.read_timeout_s or cfg.timeout_s)
        self.client = openai.AsyncOpenAI(base_url=url, api_key=api_key(cfg), max_retries=0, timeout=timeout,
                                         default_headers={**auth, **cfg.headers},
                                         default_query=url_query(cfg) or None)

    async def post(self, body: dict[str, Any], n: int) -> Any:
        try:
            # cast_to=object: the SDK's documented call for raw endpoints; the JSON comes back as it is, without
            # the per-field model validation that costs client CPU at high concurrency
            return await self.client.post("/chat/completions", body=body, cast_to=object)
        except openai.APIStatusError as e:
            raise _classify_status(e.status_code, e.message, e.response.headers, n) from None
        except openai.APITimeoutError:
            raise SampleFailure("timeout", f"no answer within {self.timeout:g}s") from None
        except openai.APIConnectionError as e:
            raise SampleFailure("connection", _short(str(e.__cause__ or e))) from None
        except (ValueError, openai.APIResponseValidationError) as e:
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
        return SampleFailure("rate_limit", message, _retry_after(headers), status)
    if status >= 500:
        return SampleFailure("server_error", message, _retry_after(headers), status)
    if status in (408, 409):
        return SampleFailure("timeout", message, status=status)
    if status == 400 and n > 1 and "'n'" in text.replace('"n"', "'n'"):
        return SampleFailure("n_unsupported", message, status=status)
    return SampleFailure("client_error", message, status=status)


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
