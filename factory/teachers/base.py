"""The Teacher protocol: requests in, completions out through a callback, never an exception per sample."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..storage.records import Prompt


@dataclass
class Request:
    prompt: Prompt
    messages: list[dict[str, str]]
    sample_indices: list[int]  # the missing samples of this prompt; engines may serve them with native n
    keys: list[str] = field(default_factory=list)  # the caller's cache key of each sample index (engines ignore it)


@dataclass
class Completion:
    sample_index: int
    text: str = ""
    reasoning_content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    error_class: str | None = None  # e.g. rate_limit, server_error, timeout, connection, bad_response, client_error
    billed: tuple[float, float] | None = None  # (prompt, completion) tokens this sample is billed for, where the
    # counts above cannot say (n choices in one request: the request's usage split evenly among them)


def billed_tokens(x: Completion | dict) -> tuple[float, float]:
    """(prompt, completion) tokens a sample (a Completion or its cache record) was billed for."""
    get = x.get if isinstance(x, dict) else lambda k: getattr(x, k)
    return tuple(get("billed") or (get("prompt_tokens") or 0, get("completion_tokens") or 0))


@dataclass
class Usage:
    """What a teacher reports for the progress bar; engines update it as results come in."""
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    decoding_tokens: int = 0  # tokens written so far by samples not finished yet (an engine that steps reports it)
    first_token_s: float | None = None  # seconds from the first request to the first token decoded (idem)
    first_sample_s: float | None = None  # ... and to the first sample finished: how long a user sees nothing land

    def fail(self, cls: str) -> None:
        self.failures[cls] = self.failures.get(cls, 0) + 1


Sink = Callable[[Request, Completion], None]

# What a stream of requests yields when it has none to give yet but may later (a budget whose room is held by
# samples in flight): a teacher that can wait (`waits_for_room = True`) sleeps and asks again; others never see it.
PAUSE = Request(prompt=None, messages=[], sample_indices=[])  # type: ignore[arg-type]


class Teacher(Protocol):
    engine: str
    model: str  # the model name recorded in traces
    usage: Usage

    def generate(self, requests: Iterable[Request], sink: Sink) -> None:
        """Serve every sample of every request, calling `sink` once per sample as soon as it is done. `requests`
        may be a generator: engines take from it as they have room, so a million-sample plan is never a list."""
        ...

    def close(self) -> None: ...
