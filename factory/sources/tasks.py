"""The tasks a prompt can be: what each source checks a row's `task` against."""

from __future__ import annotations

from ..core.errors import FactoryError

KNOWN_TASKS = ("math", "code", "choice")


def check_task(task: str, where: str) -> str:
    if task in KNOWN_TASKS or (task.startswith("gym:") and len(task) > 4):
        return task
    raise FactoryError(f"{where}: unknown task {task!r} (expected math, code, choice or gym:NAME)")
