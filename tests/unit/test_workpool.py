import time

from factory.workpool import ordered_map
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
