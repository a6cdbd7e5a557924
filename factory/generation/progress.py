"""Rich progress bars: generation (samples/s, tokens/s, failures by class, ETA) and row stages (rows/s, ETA)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..teachers.base import Usage


class LiveTokens(ProgressColumn):
    """Tokens per second and a token-based ETA, read from the teacher's counts at every redraw (rich redraws 4
    times a second on its own thread): an engine that decodes every sample in lockstep finishes none for minutes,
    and a rate of finished samples would show nothing moving until then."""

    def __init__(self, owner: GenerationProgress):
        super().__init__()
        self.owner = owner

    def render(self, task) -> Text:
        o, u = self.owner, self.owner.usage
        elapsed = max(time.perf_counter() - o.started, 1e-9)
        written = u.completion_tokens + u.decoding_tokens
        if not written:
            return Text("waiting for the first tokens")
        rate = written / elapsed
        line = f"{o.done / elapsed:.2f} samples/s {rate:,.0f} tok/s"
        eta = o.eta_s(rate)
        return Text(line + ("" if eta is None else f" ETA ~{_clock(eta)}"))


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class GenerationProgress:
    """Samples done of those asked for; tokens/s and an ETA from tokens (the engine's own counts, written tokens
    included), so something moves from the first decoded token on. `max_tokens`: a sample's limit, the length
    assumed for the ETA until samples have finished (then their mean)."""

    def __init__(self, total: int, usage: Usage, enabled: bool = True, console: Console | None = None,
                 label: str = "generate", max_tokens: int | None = None):
        self.usage = usage
        self.started = time.perf_counter()
        self.done = 0
        self.total = total
        self.max_tokens = max_tokens
        self._shown = 0.0
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), LiveTokens(self),
            TimeElapsedColumn(), TextColumn("{task.fields[fails]}"),
            console=console or Console(stderr=True), disable=not enabled, transient=False, refresh_per_second=4)
        self.task = self.progress.add_task("generate", total=total, fails="")

    def eta_s(self, tokens_per_s: float) -> float | None:
        """Seconds left at this rate: the samples not finished × their expected length, less what they wrote."""
        mean = self.usage.completion_tokens / self.done if self.done else self.max_tokens
        if not mean or tokens_per_s <= 0:
            return None
        left = max(0.0, (self.total - self.done) * mean - self.usage.decoding_tokens)
        return left / tokens_per_s

    def __enter__(self) -> Callable[[], None]:
        self.progress.start()
        return self.advance

    def advance(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self._shown < 0.25 and self.done < self.total:
            return  # at thousands of samples/s, redrawing per sample would cost more than the sample
        self._shown = now
        fails = "errors " + " ".join(f"{k}:{v}" for k, v in sorted(self.usage.failures.items()))
        self.progress.update(self.task, completed=self.done, fails=f"[red]{fails}" if self.usage.failures else "")

    def __exit__(self, *_: object) -> None:
        self.progress.stop()


@contextmanager
def starting(what: str, enabled: bool = True) -> Iterator[None]:
    """A line with a spinner and the time it has taken while something slow starts (a local engine: minutes on
    a CPU), so the first minute of a stage is never silent."""
    progress = Progress(SpinnerColumn(), TextColumn(f"starting {what}"), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not enabled, transient=True)
    progress.add_task(what, total=None)
    with progress:
        yield


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
