import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.core.errors import FactoryError
from factory.storage.records import TRACE_SCHEMA, Prompt, Trace, make_prompt_id, prompt_from_row, schema_hash
from factory.storage.shards import ShardWriter, iter_shards, read_manifest, read_table, write_shards


def _trace(i: int) -> dict:
    p = Prompt(source="test", task="math", problem=f"What is {i} + 1?", reference_answer=str(i + 1))
    t = Trace(prompt=p, sample_index=0, teacher_model="m", engine="hf", sampling="{}", messages="[]",
              reasoning="r", answer="\\boxed{1}", raw_completion="x", created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    return t.to_row()


def test_prompt_id_is_stable_and_depends_on_source_and_problem():
    assert make_prompt_id("a", "x") == make_prompt_id("a", "x") == Prompt("a", "math", "x").prompt_id
    assert len({make_prompt_id("a", "x"), make_prompt_id("b", "x"), make_prompt_id("a", "y")}) == 3


def test_round_trip_and_manifest(tmp_path):
    rows = [_trace(i) for i in range(25)]
    manifest = write_shards(tmp_path / "traces", rows, TRACE_SCHEMA, rows_per_shard=10)
    files = sorted(p.name for p in (tmp_path / "traces").glob("*.parquet"))
    assert files == [f"part-0000{i}-of-00003.parquet" for i in range(3)]
    assert manifest["rows"] == 25 and [f["rows"] for f in manifest["files"]] == [10, 10, 5]
    assert manifest["schema_hash"] == schema_hash(TRACE_SCHEMA)
    table = read_table(tmp_path / "traces", TRACE_SCHEMA)
    assert table.schema.equals(TRACE_SCHEMA) and table.to_pylist() == rows
    assert prompt_from_row(rows[3]).prompt_id == rows[3]["prompt_id"]
    assert not list(tmp_path.glob(".traces*")), "no temporary directory is left behind"


def test_failed_write_leaves_previous_output(tmp_path):
    write_shards(tmp_path / "traces", [_trace(0)], TRACE_SCHEMA)
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "traces", TRACE_SCHEMA, rows_per_shard=1) as w:
            w.write_rows([_trace(1), _trace(2)])
            raise RuntimeError("crash mid-stage")
    assert read_manifest(tmp_path / "traces")["rows"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["traces"]


def test_rewrite_replaces_whole_directory(tmp_path):
    write_shards(tmp_path / "t", [_trace(i) for i in range(4)], TRACE_SCHEMA, rows_per_shard=1)
    write_shards(tmp_path / "t", [_trace(9)], TRACE_SCHEMA)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["manifest.json", "part-00000-of-00001.parquet"]


def test_missing_manifest_and_missing_column_are_named(tmp_path):
    (tmp_path / "t").mkdir()
    with pytest.raises(FactoryError, match="no manifest.json"):
        list(iter_shards(tmp_path / "t"))
    bad = pa.table({"prompt_id": ["a"], "problem": ["p"]})
    pq.write_table(bad, tmp_path / "t" / "part-00000-of-00001.parquet")
    (tmp_path / "t" / "manifest.json").write_text(json.dumps({"files": [{"file": "part-00000-of-00001.parquet",
                                                                         "rows": 1}], "rows": 1}))
    with pytest.raises(FactoryError, match=r"part-00000-of-00001.parquet: missing required column 'source'"):
        list(iter_shards(tmp_path / "t", TRACE_SCHEMA))


def test_wrong_column_type_is_named(tmp_path):
    rows = [_trace(0)]
    table = pa.Table.from_pylist(rows, schema=TRACE_SCHEMA).set_column(
        TRACE_SCHEMA.get_field_index("problem"), "problem", pa.array([1]))
    (tmp_path / "t").mkdir()
    pq.write_table(table, tmp_path / "t" / "p.parquet")
    (tmp_path / "t" / "manifest.json").write_text(json.dumps({"files": [{"file": "p.parquet", "rows": 1}], "rows": 1}))
    with pytest.raises(FactoryError, match="column 'problem' has type int64, expected string"):
        list(iter_shards(tmp_path / "t", TRACE_SCHEMA))


def test_temp_dirs_of_dead_writers_are_removed_and_others_kept(tmp_path):
    import os

    from factory.storage.records import TRACE_SCHEMA
    from factory.storage.shards import ShardWriter

    dead, live, legacy = (tmp_path / ".traces.tmp-999999999-ab12", tmp_path / ".traces.tmp-1-cd34",
                          tmp_path / ".traces.tmp-ef56")
    mine = tmp_path / f".traces.tmp-{os.getpid()}-0000"
    for d in (dead, live, legacy, mine):
        d.mkdir()
    writer = ShardWriter(tmp_path / "traces", TRACE_SCHEMA)
    writer.abort()
    assert not dead.exists() and live.exists() and legacy.exists() and mine.exists()
