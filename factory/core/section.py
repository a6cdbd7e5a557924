"""Which command line and which pipeline section are running: the ambient state a stage reads to write its
section of config.resolved.yaml, and that the processes it launches inherit (through SECTION_ENV)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

COMMAND: str | None = None  # the command line that is running, for lineage; set by the CLI
_SECTION: ContextVar[str | None] = ContextVar("section", default=None)


@contextmanager
def stage_section(name: str | None) -> Iterator[None]:
    """Stages write their section of config.resolved.yaml under `name` inside this block (a pipeline's named
    instance, e.g. sft2 of kind distill), instead of under their kind."""
    token = _SECTION.set(name)
    try:
        yield
    finally:
        _SECTION.reset(token)


SECTION_ENV = "FACTORY_SECTION"  # a pipeline's instance name, handed to the processes a stage launches


def current_section() -> str | None:
    """The pipeline instance whose section a stage writes (set by stage_section, or by the pipeline that
    launched this process)."""
    return _SECTION.get() or os.environ.get(SECTION_ENV) or None
