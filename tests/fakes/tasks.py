"""Tasks for worker-pool tests: importable by spawned worker processes."""

import os
import time


def tenfold(x: int, hang: int = -1, die: int = -1) -> int:
    if x == hang:
        time.sleep(60)
    if x == die:
        os._exit(3)
    return 10 * x


def report_pid_then_sleep(path: str) -> None:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)


def pids(_: int) -> tuple[int, int]:
    """The worker's process id and its parent's."""
    return os.getpid(), os.getppid()
