"""Prompt sources: each turns a spec into Prompts with stable ids.

`load_prompts` reads the whole source before anything is generated, so a bad line stops the run before a single
request is sent or a file is written.
"""

from __future__ import annotations

from ..config import PromptsConfig
from ..errors import FactoryError
from ..records import Prompt
from .spec import parse_source

KNOWN_TASKS = ("math", "code")


def check_task(task: str, where: str) -> str:
    if task in KNOWN_TASKS or (task.startswith("gym:") and len(task) > 4):
        return task
    raise FactoryError(f"{where}: unknown task {task!r} (expected math, code or gym:NAME)")


def load_prompts(cfg: PromptsConfig) -> list[Prompt]:
    spec = parse_source(cfg.source)
    if spec.kind == "gym":
        from .gym import load_gym
        prompts = load_gym(spec.name, cfg)
    elif spec.kind == "hf":
        from .hf import load_hf
        prompts = load_hf(spec.name, cfg)
    elif spec.kind == "humaneval":
        from .humaneval import load_humaneval
        prompts = load_humaneval()
    else:
        from .files import load_file
        prompts = load_file(spec.name, cfg)
    prompts = _unique(prompts)
    if cfg.limit is not None:
        prompts = prompts[: cfg.limit]
    if not prompts:
        raise FactoryError(f"{spec.text}: no prompts")
    return prompts


def _unique(prompts: list[Prompt]) -> list[Prompt]:
    """The same problem twice would share a prompt_id and its samples: keep the first."""
    seen: set[str] = set()
    out = []
    for p in prompts:
        if p.prompt_id not in seen:
            seen.add(p.prompt_id)
            out.append(p)
    return out
