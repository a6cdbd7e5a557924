"""An ordered process pool that replaces hung or dead workers.

`concurrent.futures` cannot cancel a running task: one row that hangs below Python (a sympy loop that
ignores SIGALRM, a stuck C extension) would stall the whole stage. Here a task past its deadline, or a pool
broken by a crash, gets its workers killed and a fresh pool; the task's result comes from `on_hang`, and the
tasks that were queued behind it are resubmitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def _kill(pool: ProcessPoolExecutor) -> None:
    # _processes is private, but the only handle on the workers; it has been stable since Python 3.2.
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def ordered_map(fn: Callable[..., Any], tasks: Sequence[tuple], workers: int, deadline_s: float,
                on_hang: Callable[[tuple], Any], initializer: Callable | None = None,
                initargs: tuple = ()) -> Iterator[Any]:
    """Yields fn(*task) for every task, in order, with at most 2 tasks per worker in flight."""
    def fresh() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, initializer=initializer, initargs=initargs)

    pool, pending, next_task = fresh(), deque(), 0  # pending: (task, future, tries)
    try:
        while next_task < len(tasks) or pending:
            while next_task < len(tasks) and len(pending) < 2 * workers:
                pending.append((tasks[next_task], pool.submit(fn, *tasks[next_task]), 1))
                next_task += 1
            task, future, tries = pending.popleft()
            try:
                yield future.result(timeout=deadline_s)
                continue
            except FutureTimeout:
                retry = False
            except BrokenProcessPool:
                retry = tries == 1  # a crash breaks every task in flight: give bystanders a second run
            _kill(pool)
            pool = fresh()
            rest = [(t, n) for t, _, n in pending]
            if retry:
                rest.insert(0, (task, tries + 1))
            pending = deque((t, pool.submit(fn, *t), n) for t, n in rest)
            if not retry:
                yield on_hang(task)
    finally:
        _kill(pool)  # every task is resolved here, or the caller stopped early: nothing is worth waiting for
