"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for what a real server won't do on demand:
429 with Retry-After, 5xx, slow answers, dropped connections, malformed bodies. It counts every request.

Faults are scripted per problem: `faults={"needle": ["429:0.2", "500", "ok"]}` makes the first request whose
prompt contains "needle" get a 429 (Retry-After 0.2 s), the second a 500, the rest normal answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Logged:
    content: str
    n: int
    fault: str
    at: float


@dataclass
class FakeOpenAI:
    model: str = "fake-teacher"
    api_key: str | None = None
    delay_s: float = 0.0
    support_n: bool = True
    reject_n: bool = False  # answer 400 to n > 1, as some providers do
    reasoning_field: bool = False  # put the reasoning in `reasoning_content`, as vLLM's reasoning parsers do
    faults: dict[str, list[str]] = field(default_factory=dict)
    replies: dict[str, list[str]] = field(default_factory=dict)  # prompt needle -> the answers to give, in turn
    body_chars: int = 0  # pad the reasoning to this size (benchmarks)
    completion_tokens: int = 20  # usage reported per choice
    basic_auth: str | None = None  # "user:password": require HTTP Basic auth instead of a Bearer key
    models_html: bool = False  # answer /models with an HTML page, as a web server in front of nothing does
    no_models: bool = False  # no /models route (404), as some providers
    correct: dict[str, tuple[str, float]] = field(default_factory=dict)  # a problem's first line -> (its answer,
    # the chance each sample gives it; else a wrong one): a teacher of known pass rates, for adaptive sampling
    seed: int = 0
    log: list[Logged] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)  # each request's URL query, in arrival order

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._canned: dict[int, bytes] = {}
        self._rng = random.Random(self.seed)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> str:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]  # (host, port) of the socket the site bound
        self._ready.set()
        self._loop.run_forever()

    def _routes(self, app: web.Application) -> None:
        """More routes, for a subclass (the Batch API stand-in)."""

    def stop(self) -> None:
        """Stops the server (again: nothing)."""
        if self._loop:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    # --- handlers --------------------------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        got = request.headers.get("Authorization")
        if self.basic_auth is not None:
            import base64

            return got == "Basic " + base64.b64encode(self.basic_auth.encode()).decode()
        return self.api_key is None or got == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.Response:
        if self.no_models:
            return web.json_response({"error": {"message": "Not Found"}}, status=404)
        if self.models_html:
            return web.Response(text="<html><body><h1>Welcome to nginx!</h1></body></html>", content_type="text/html")
        if not self._authorised(request):
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    def _next_fault(self, content: str) -> str:
        with self._lock:
            for needle, script in self.faults.items():
                if needle in content and script:
                    return script.pop(0)
        return "ok"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if not self._authorised(request):
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        body = await request.json()
        content = body["messages"][-1]["content"]
        n = int(body.get("n") or 1)
        fault = "reject_n" if self.reject_n and n > 1 else self._next_fault(content)
        with self._lock:
            self.log.append(Logged(content, n, fault, time.monotonic()))
        if body.get("model") != self.model:
            return web.json_response({"error": {"message": f"The model `{body.get('model')}` does not exist."}},
                                     status=404)
        if fault == "reject_n":
            return web.json_response({"error": {"message": "'n' must be 1 for this model"}}, status=400)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await self._apply(fault, request, body, content, n)

    async def _apply(self, fault: str, request: web.Request, body: dict, content: str, n: int) -> web.StreamResponse:
        kind, _, arg = fault.partition(":")
        if kind in ("429", "500", "503", "400", "401"):
            headers = {"Retry-After": arg} if arg else {}
            return web.json_response({"error": {"message": f"injected {kind}"}}, status=int(kind), headers=headers)
        if kind == "echo_auth":  # a server that quotes the credentials it got back in its error
            message = f"bad request (auth: {request.headers.get('Authorization')})"
            return web.json_response({"error": {"message": message}}, status=400)
        if kind == "slow":
            await asyncio.sleep(float(arg or 30))
        if kind == "drop":
            request.transport.close()  # the connection dies with no response
            raise asyncio.CancelledError
        if kind == "malformed":
            return web.Response(text='{"choices": [ {"message": tru', content_type="application/json")
        n = 1 if not self.support_n else n
        if self.body_chars:  # benchmarks: a canned body, so the server's CPU is not what is measured
            if n not in self._canned:
                self._canned[n] = json.dumps(self._completion(body, "benchmark", n)).encode()
            return web.Response(body=self._canned[n], content_type="application/json")
        return web.json_response(self._completion(body, content, n))

    def _scripted(self, content: str) -> str | None:
        with self._lock:
            for needle, script in self.replies.items():
                if needle in content and script:
                    return script.pop(0) if len(script) > 1 else script[0]  # the last answer repeats
        return None

    def _completion(self, body: dict, content: str, n: int) -> dict:
        choices = []
        scripted = self._scripted(content)
        for i in range(n):
            if scripted is not None:
                choices.append({"index": i, "message": {"role": "assistant", "content": scripted},
                                "finish_reason": "stop"})
                continue
            reasoning = f"Let me think about: {content[:40]} (choice {i})" + " step" * (self.body_chars // 5)
            answer = self._answer(content)
            if self.reasoning_field:
                message = {"role": "assistant", "content": answer, "reasoning_content": reasoning}
            else:
                message = {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}
            length = body.get("max_tokens", 10**9) < 8
            choices.append({"index": i, "message": message, "finish_reason": "length" if length else "stop"})
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": choices,
                "usage": {"prompt_tokens": len(content) // 4, "completion_tokens": self.completion_tokens * n,
                          "total_tokens": len(content) // 4 + self.completion_tokens * n}}

    def _answer(self, content: str) -> str:
        known = self.correct.get(content.split("\n", 1)[0])
        if known is None:
            return "The answer is \\boxed{42}."
        right, rate = known
        with self._lock:
            hit = self._rng.random() < rate
        return f"The answer is \\boxed{{{right if hit else right + '1'}}}."

    # --- what the tests read -----------------------------------------------------------------------------------
    def served(self, ok_only: bool = True) -> int:
        """Samples answered (n per normal request)."""
        with self._lock:
            return sum((e.n if self.support_n else 1) for e in self.log if not ok_only or e.fault == "ok")


def main() -> None:
    """`python -m tests.fakes.openai_server URL_FILE [body_chars]`: serve until killed (benchmarks)."""
    import sys

    server = FakeOpenAI(body_chars=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    url = server.start()
    with open(sys.argv[1], "w") as f:
        f.write(url)
    threading.Event().wait()


if __name__ == "__main__":
    main()
