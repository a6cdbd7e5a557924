"""Two `factory generate` on the same new --out: the winner completes, the loser exits 1 and removes nothing."""

import multiprocessing
import os
import sys

import pytest

from factory.storage.shards import read_manifest, read_table
from tests.conftest import write_jsonl


def _generate(barrier, url: str, prompts: str, out: str, log: str) -> None:
    sys.stderr = open(log, "w")  # the child's own stderr, not pytest's capture inherited through fork
    from factory.cli import main

    barrier.wait()
    code = main(["generate", "--prompts", prompts, "--teacher", "openai:fake-teacher", "--base-url", url,
                 "--n", "2", "--out", out, "--no-progress", "--set", "teacher.concurrency=2"])
    sys.stderr.flush()
    os._exit(code)


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_twenty_races_on_a_new_run_dir(tmp_path, fake_server):
    server, url = fake_server(delay_s=0.3)
    prompts = str(write_jsonl(tmp_path / "p.jsonl", [{"problem": f"{i} + 1?", "answer": str(i + 1)} for i in range(4)]))
    ctx = multiprocessing.get_context("fork")
    for race in range(20):
        out = str(tmp_path / f"run{race}")
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_generate, args=(barrier, url, prompts, out, str(tmp_path / f"log{race}-{i}")))
                 for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        codes = sorted(p.exitcode for p in procs)
        assert codes == [0, 1], f"race {race}: exit codes {codes}"
        loser = next(i for i, p in enumerate(procs) if p.exitcode == 1)
        err = (tmp_path / f"log{race}-{loser}").read_text().strip()
        assert err.startswith("error: ") and "another factory process" in err and "\n" not in err, err
        assert read_manifest(tmp_path / f"run{race}" / "traces")["rows"] == 8, f"race {race}: the winner's run"
        assert all(r["error"] is None for r in read_table(tmp_path / f"run{race}" / "traces").to_pylist())
    assert server.served() == 20 * 8, "no sample was bought twice or lost"


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    from factory.storage.cache import SampleCache

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "LOCK").write_text("999999999\n")  # no such pid: its holder was kill -9'd
    with SampleCache(tmp_path / "cache") as cache:
        assert len(cache) == 0
    assert "taking over the lock left by pid 999999999" in capsys.readouterr().err
    assert (tmp_path / "cache" / "LOCK").read_text() == "", "a clean exit leaves no pid behind"
