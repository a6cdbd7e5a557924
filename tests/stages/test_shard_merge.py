"""`factory generate --shard I/N` (Slurm job arrays) then `factory merge`: the merged run equals the unsharded one;
a missing, unfinished or mismatched shard is refused in one line."""

import json
import shutil

import pytest

from factory.cli import main
from factory.storage.shards import read_manifest, read_table
from tests.conftest import write_jsonl


@pytest.fixture
def setup(tmp_path, fake_server):
    _, url = fake_server()
    write_jsonl(tmp_path / "p.jsonl", [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(12)])

    def generate(out, *extra):
        return main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                     "--base-url", url, "--n", "2", "--out", str(out), "--no-progress", *extra])
    return generate


def _rows(traces):
    return sorted((r["prompt_id"], r["sample_index"], r["raw_completion"], r["answer"])
                  for r in read_table(traces).to_pylist())


def test_merged_shards_equal_the_unsharded_run(tmp_path, setup):
    assert setup(tmp_path / "whole") == 0
    sharded = tmp_path / "sharded"
    for i in range(3):
        assert setup(sharded, "--shard", f"{i}/3") == 0
    sizes = [read_manifest(sharded / "shards" / f"{i}-of-3" / "traces")["rows"] for i in range(3)]
    assert sum(sizes) == 24 and all(sizes), sizes
    assert main(["merge", str(sharded)]) == 0
    assert _rows(sharded / "traces") == _rows(tmp_path / "whole" / "traces")
    merged, whole = read_manifest(sharded / "traces"), read_manifest(tmp_path / "whole" / "traces")
    same = lambda m: {k: v for k, v in m["config"].items() if k != "out"}  # noqa: E731
    assert same(merged) == same(whole) and merged["config"]["shard"] is None, "the merged run is an unsharded run"
    stats = json.loads((sharded / "generate_stats.json").read_text())
    assert stats["samples"] == 24 and stats["ok"] == 24
    assert main(["filter", str(sharded), "--no-progress", "--workers", "1"]) == 0
    assert main(["filter", str(tmp_path / "whole"), "--no-progress", "--workers", "1"]) == 0
    kept = lambda run: sorted(r["prompt_id"] for r in read_table(run / "filtered" / "kept").to_pylist())  # noqa: E731
    assert kept(sharded) == kept(tmp_path / "whole")


def test_missing_unfinished_or_mismatched_shards_are_refused(tmp_path, setup, capsys):
    run = tmp_path / "run"
    assert setup(run, "--shard", "0/2") == 0
    assert main(["merge", str(run)]) == 1
    assert "missing 1-of-2" in capsys.readouterr().err
    assert setup(run, "--shard", "1/2", "--set", "sampling.temperature=0.7") == 0
    assert main(["merge", str(run)]) == 1
    assert "generated with other settings than 0-of-2 (field 'sampling')" in capsys.readouterr().err
    shutil.rmtree(run / "shards" / "1-of-2")
    assert setup(run, "--shard", "1/2") == 0
    (run / "shards" / "1-of-2" / "traces" / "manifest.json").unlink()
    assert main(["merge", str(run)]) == 1
    assert "1-of-2: unfinished" in capsys.readouterr().err and not (run / "traces").exists()
    assert setup(run, "--shard", "2/2") == 1
    assert "expected I/N with 0 <= I < N" in capsys.readouterr().err
