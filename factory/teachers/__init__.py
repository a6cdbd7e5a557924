"""Teacher engines behind one Protocol, selected by `--teacher ENGINE:MODEL`."""

from __future__ import annotations

import importlib.util

from ..config.teacher import SamplingConfig, TeacherConfig
from ..core.errors import FactoryError
from .base import PAUSE, Completion, Request, Teacher, Usage, billed_tokens

__all__ = ["PAUSE", "Completion", "Request", "Teacher", "Usage", "billed_tokens", "make_teacher", "parse_teacher", "resolve_engine"]

ENGINES = ("openai", "vllm", "llamacpp", "hf", "auto")


def parse_teacher(spec: str) -> dict[str, str]:
    """`ENGINE:MODEL` -> {"engine", "model"}; the model may itself contain colons."""
    engine, sep, model = spec.partition(":")
    if not sep or not model:
        raise FactoryError(f"--teacher {spec!r}: expected ENGINE:MODEL, e.g. vllm:qwen2.5-coder-0.5b")
    if engine not in ENGINES:
        raise FactoryError(f"--teacher {spec!r}: unknown engine {engine!r} (expected one of {', '.join(ENGINES)})")
    return {"engine": engine, "model": model}


def resolve_engine(engine: str, model: str | None = None) -> str:
    """`auto`: llama.cpp for a GGUF model on a CPU without native bf16 (where a server is built), else vLLM when
    importable, else transformers."""
    if engine != "auto":
        return engine
    if model is not None:
        from .llamacpp import preferred

        if preferred(model):
            return "llamacpp"
    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def make_teacher(cfg: TeacherConfig, sampling: SamplingConfig, check: bool = True) -> Teacher:
    """`check=False`: skip the API preflight (a cluster's actors, whose driver already made it)."""
    engine = resolve_engine(cfg.engine, cfg.model)
    if engine == "openai":
        from .openai_compat import OpenAITeacher, preflight
        if check:
            preflight(cfg)
        return OpenAITeacher(cfg, sampling)
    if engine == "vllm":
        from .vllm_engine import VLLMTeacher
        return VLLMTeacher(cfg, sampling)
    if engine == "llamacpp":
        from .llamacpp import LlamaCppTeacher
        return LlamaCppTeacher(cfg, sampling)
    from .hf_engine import HFTeacher
    return HFTeacher(cfg, sampling)
