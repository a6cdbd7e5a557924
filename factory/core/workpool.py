"""An ordered process pool with a deadline per task, on pebble's `ProcessPool`.

`concurrent.futures` cannot cancel a running task: one row that hangs below Python (a sympy loop that ignores
SIGALRM, a stuck C extension) would stall the whole stage. pebble kills the worker of a task past its deadline
(or one that died) and starts a fresh one; here the task's result then comes from `on_hang`, after one more try
for a worker that died (it may have been a bystander of memory pressure).

Workers die with their parent: each sets PR_SET_PDEATHSIG, so a `kill -9` of the stage leaves no orphan behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from pebble import ProcessExpired, ProcessPool

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Asks the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a no-op). Hand-written:
    three lines of ctypes; the packages that wrap prctl need libcap headers to build."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0 and os.getppid() != parent:
        os._exit(1)  # the parent died before the request took effect


def stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if the child has not exited within `grace_s`; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent()
    if initializer is not None:
        initializer(*initargs)


def ordered_map(fn: Callable[..., Any], tasks: Sequence[tuple], workers: int, deadline_s: float,
                on_hang: Callable[[tuple], Any], initializer: Callable | None = None,
                initargs: tuple = ()) -> Iterator[Any]:
    """Yields fn(*task) for every task, in order, with at most 2 tasks per worker in flight, on a pool of its own."""
    pool = WorkPool(workers, initializer, initargs, start="fork")
    try:
        yield from pool.map(fn, tasks, deadline_s, on_hang)
    finally:
        pool.close()  # every task is resolved here, or the caller stopped early: nothing is worth waiting for


class WorkPool:
    """Worker processes kept for many `map` calls (GRPO scores every step's completions on the same ones).

    start="forkserver": workers, and the ones that replace a hung or dead worker later, are forked from a
    clean server process started for the pool, never from the caller, which may hold CUDA and NCCL state by
    then (a fork of such a process can deadlock or corrupt the GPU context)."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: tuple = (),
                 start: str = "forkserver"):
        import multiprocessing

        self.workers = max(1, workers)
        self.pool = ProcessPool(max_workers=self.workers, initializer=_start_worker,
                                initargs=(initializer, initargs), context=multiprocessing.get_context(start))
        self._shutdown = weakref.finalize(self, _shutdown, self.pool)  # one nobody closed: when it is collected

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple], deadline_s: float,
            on_hang: Callable[[tuple], Any]) -> Iterator[Any]:
        """Yields fn(*task) for every task, in order; a task past its deadline, or whose worker died twice,
        yields on_hang(task)."""
        pending: deque = deque()  # (task, future, tries)
        next_task = 0
        try:
            while next_task < len(tasks) or pending:
                while next_task < len(tasks) and len(pending) < 2 * self.workers:
                    task = tasks[next_task]
                    pending.append((task, self.pool.schedule(fn, args=task, timeout=deadline_s), 1))
                    next_task += 1
                task, future, tries = pending.popleft()
                try:
                    yield future.result()
                except FutureTimeout:
                    yield on_hang(task)
                except ProcessExpired:
                    if tries == 1:
                        pending.appendleft((task, self.pool.schedule(fn, args=task, timeout=deadline_s), 2))
                    else:
                        yield on_hang(task)
        finally:
            for _, future, _ in pending:  # a caller that stopped early leaves nothing running on a kept pool
                future.cancel()

    def close(self) -> None:
        self._shutdown()


def _shutdown(pool: ProcessPool) -> None:
    pool.stop()  # pebble ends the workers only once joined
    pool.join()
