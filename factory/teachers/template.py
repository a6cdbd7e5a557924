"""The R1 prompt: one user message (no system prompt, as R1 recommends), by task."""

from __future__ import annotations

from ..config.stages import TemplateConfig
from ..storage.records import Prompt


def build_messages(prompt: Prompt, cfg: TemplateConfig) -> list[dict[str, str]]:
    template = {"code": cfg.code, "choice": cfg.choice}.get(prompt.task, cfg.math)
    # str.replace, not format: problems are full of braces.
    messages = [{"role": "user", "content": template.replace("{problem}", prompt.problem)}]
    if cfg.system:
        messages.insert(0, {"role": "system", "content": cfg.system})
    return messages
