import time

from factory.core.workpool import ordered_map
from tests.fakes.tasks import tenfold


def _run(tasks, deadline_s=2):
    return list(ordered_map(tenfold, tasks, workers=2, deadline_s=deadline_s, on_hang=lambda t: f"hung {t[0]}"))


def test_a_hung_worker_is_replaced_after_the_deadline():
    started = time.monotonic()
    assert _run([(i, 2) for i in range(6)]) == [0, 10, "hung 2", 30, 40, 50]
    assert 2 <= time.monotonic() - started < 20


def test_a_dead_worker_is_replaced_and_bystanders_rerun():
    assert _run([(i, -1, 3) for i in range(6)]) == [0, 10, 20, "hung 3", 40, 50]


def test_order_is_kept_with_many_tasks():
    assert _run([(i,) for i in range(40)]) == [10 * i for i in range(40)]


def test_a_busy_worker_dies_with_its_killed_parent(tmp_path):
    """kill -9 of the stage while a worker is deep in a task: the worker must not live on as an orphan."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO

    pid_file = tmp_path / "worker.pid"
    code = ("from factory.core.workpool import ordered_map\nfrom tests.fakes.tasks import report_pid_then_sleep\n"
            f"list(ordered_map(report_pid_then_sleep, [({str(pid_file)!r},)], 1, 300, print))\n")
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its parent")


def test_a_kept_pool_serves_every_map_on_the_same_workers_forked_from_a_clean_server():
    """GRPO scores each step on one pool for the trainer's life; its workers (and any that replace one later)
    come from a forkserver, never from the trainer, which may hold CUDA by then."""
    import os

    from factory.core.workpool import WorkPool
    from tests.fakes.tasks import pids

    pool = WorkPool(2)
    try:
        first = set(pool.map(pids, [(i,) for i in range(8)], 30, print))
        second = set(pool.map(pids, [(i,) for i in range(8)], 30, print))
        # Which of the two workers takes a task is the scheduler's choice (one may do all eight while the other
        # starts); kept workers means no map adds a process: two maps together used at most the pool's two.
        assert len({p for p, _ in first | second}) <= 2, "kept workers"
        assert all(parent != os.getpid() for _, parent in first | second), "forked by the server, not by us"
        assert list(pool.map(tenfold, [(i, 2) for i in range(4)], 2, lambda t: "hung")) == [0, 10, "hung", 30]
        assert list(pool.map(tenfold, [(i,) for i in range(3)], 30, print)) == [0, 10, 20], "replaced, still serving"
        workers = {p for p, _ in pool.map(pids, [(i,) for i in range(4)], 30, print)}
    finally:
        pool.close()
    assert not [p for p in workers if os.path.exists(f"/proc/{p}")], "closed: no worker is left running"
    forgotten = WorkPool(2)
    workers = {p for p, _ in forgotten.map(pids, [(i,) for i in range(4)], 30, print)}
    del forgotten  # a pool nobody closed ends its workers when it is collected
    import gc

    gc.collect()
    assert not [p for p in workers if os.path.exists(f"/proc/{p}")]
