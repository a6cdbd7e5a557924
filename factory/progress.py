"""Rich progress bars: generation (samples/s, tokens/s, failures by class, ETA) and row stages (rows/s, ETA)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .teachers.base import Usage


class GenerationProgress:
    def __init__(self, total: int, usage: Usage, enabled: bool = True, console: Console | None = None,
                 label: str = "generate"):
        self.usage = usage
        self.started = time.perf_counter()
        self.done = 0
        self.total = total
        self._shown = 0.0
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[fails]}"),
            console=console or Console(stderr=True), disable=not enabled, transient=False, refresh_per_second=4)
        self.task = self.progress.add_task("generate", total=total, rate="", fails="")

    def __enter__(self) -> Callable[[], None]:
        self.progress.start()
        return self.advance

    def advance(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self._shown < 0.25 and self.done < self.total:
            return  # at thousands of samples/s, redrawing per sample would cost more than the sample
        self._shown = now
        elapsed = max(now - self.started, 1e-9)
        rate = f"{self.done / elapsed:.2f} samples/s {self.usage.completion_tokens / elapsed:,.0f} tok/s"
        fails = "errors " + " ".join(f"{k}:{v}" for k, v in sorted(self.usage.failures.items()))
        self.progress.update(self.task, completed=self.done, rate=rate, fails=f"[red]{fails}" if self.usage.failures else "")

    def __exit__(self, *_: object) -> None:
        self.progress.stop()


class RowRate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:,.0f} rows/s")


class StageProgress:
    """A plain bar for stages that count rows: rate and ETA."""

    def __init__(self, name: str, total: int, enabled: bool = True):
        self.progress = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                                 RowRate(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                                 disable=not enabled)
        self.task = self.progress.add_task(name, total=total)

    def __enter__(self) -> Callable[[int], None]:
        self.progress.start()
        return lambda k: self.progress.advance(self.task, k)

    def __exit__(self, *_: object) -> None:
        self.progress.stop()


class BatchProgress:
    """A batch API's progress: requests done of those asked for, and the batches submitted, in progress, done."""

    def __init__(self, total: int, enabled: bool = True):
        self.progress = Progress(TextColumn("[bold]batches"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[batches]}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), disable=not enabled)
        self.task = self.progress.add_task("batches", total=total, batches="")

    def __enter__(self) -> BatchProgress:
        self.progress.start()
        return self

    def show(self, entries: list[dict], usage: Usage) -> None:
        done = sum(1 for e in entries if e.get("collected"))
        running = sum(1 for e in entries if not e.get("collected") and e.get("batch_id"))
        fails = " ".join(f"{k}:{v}" for k, v in sorted(usage.failures.items()))
        self.progress.update(self.task, completed=sum(e.get("done", 0) for e in entries),
                             batches=f"{len(entries)} submitted, {running} in progress, {done} done"
                             + (f" [red]{fails}" if fails else ""))

    def __exit__(self, *_: object) -> None:
        self.progress.stop()
