"""Prompt sources: each turns a spec into Prompts with stable ids.

`load_prompts` reads the whole source before anything is generated, so a bad line stops the run before a single
request is sent or a file is written.
"""

from __future__ import annotations

from ..config.stages import PromptsConfig
from ..core.errors import FactoryError
from ..storage.records import Prompt
from .spec import parse_source


def load_prompts(cfg: PromptsConfig) -> list[Prompt]:
    spec = parse_source(cfg.source)
    if spec.kind == "gym":
        from .gym import load_gym
        located = [(f"{spec.text} item {i}", p) for i, p in enumerate(load_gym(spec.name, cfg))]
    elif spec.kind == "hf":
        from .hf import load_hf
        located = load_hf(spec.name, cfg)
    elif spec.kind == "humaneval":
        from .humaneval import load_humaneval
        located = [(f"humaneval item {i}", p) for i, p in enumerate(load_humaneval())]
    else:
        from .files import located_file
        located = located_file(spec.name, cfg)
    prompts = unique(located, spec.text)
    if cfg.limit is not None:
        prompts = prompts[: cfg.limit]
    if not prompts:
        raise FactoryError(f"{spec.text}: no prompts")
    return prompts


def unique(located: list[tuple[str, Prompt]], source: str) -> list[Prompt]:
    """The same problem twice (same source and text) shares a prompt_id and its samples: the first is kept and the
    count merged is said. Two copies that disagree on the reference answer or the tests are an error naming both
    places, since keeping either would silently drop the other's."""
    first: dict[str, tuple[str, Prompt]] = {}
    for where, p in located:
        seen = first.setdefault(p.prompt_id, (where, p))
        if seen[1] is p:
            continue
        for field in ("reference_answer", "tests"):
            a, b = (getattr(seen[1], field) or "").strip(), (getattr(p, field) or "").strip()
            if a != b:
                raise FactoryError(f"{where}: the same problem as {seen[0]} with another {field.replace('_', ' ')} "
                                   f"({_short(b)} against {_short(a)}); make them agree or remove one")
    merged = len(located) - len(first)
    if merged:
        from rich.console import Console

        Console(stderr=True).print(f"{source}: {merged:,} of {len(located):,} prompts repeat an earlier problem "
                                   f"(same text and reference): merged into it, {len(first):,} left", markup=False,
                                   highlight=False)
    return [p for _, p in first.values()]


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...") if text else "none"
