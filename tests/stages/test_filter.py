"""`factory filter` on shards written by `factory generate` (against the fake server), end to end."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.cli import main
from factory.storage.shards import read_manifest, read_table
from tests.conftest import write_jsonl

PROBLEMS = [("What is 40 + 2?", "42"), ("What is 6 * 7?", "42"), ("What is 3 + 4?", "7"), ("Prove it.", None)]


@pytest.fixture
def run_dir(tmp_path, fake_server):
    _, url = fake_server()  # always answers \boxed{42}
    rows = [{"problem": p, **({"answer": a} if a else {})} for p, a in PROBLEMS]
    write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "run"
    assert main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                 "--base-url", url, "--n", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def _filter(run_dir, *args) -> int:
    return main(["filter", str(run_dir), "--no-progress", "--workers", "1", *args])


def test_funnel_reasons_and_columns(run_dir):
    assert _filter(run_dir) == 0
    stats = json.loads((run_dir / "filtered" / "stats.json").read_text())
    assert stats["funnel"]["in"] == 8 and stats["funnel"]["kept"] == 4
    assert stats["funnel"]["rejected_by"]["correctness"] == 4
    assert stats["reasons"]["correctness: wrong_answer"] == 2 and stats["reasons"]["correctness: no_reference"] == 2
    assert stats["pass_rate"]["by_task"] == {"math": pytest.approx(2 / 3, abs=1e-3)}, "unverified prompts don't count"
    kept = read_table(run_dir / "filtered" / "kept").to_pylist()
    rejected = read_table(run_dir / "filtered" / "rejected").to_pylist()
    assert len(kept) == 4 and all(r["kept"] and r["reject_reason"] is None and r["pass_rate"] == 1.0 for r in kept)
    assert {r["reject_reason"] for r in rejected} == {"correctness"}
    verdicts = json.loads(kept[0]["verdicts"])
    assert set(verdicts) == {"format", "length", "correctness", "language", "code_block", "repetition", "identity",
                             "decontam", "dedup", "selection"}
    assert verdicts["correctness"]["ok"] and verdicts["correctness"]["details"]["predicted"] == "42"
    assert "filter" in (run_dir / "config.resolved.yaml").read_text()


def test_selection_and_rerun_replace_outputs(run_dir):
    assert _filter(run_dir) == 0
    assert _filter(run_dir, "--set", "selection.max_per_prompt=1") == 0
    assert read_manifest(run_dir / "filtered" / "kept")["rows"] == 2
    stats = json.loads((run_dir / "filtered" / "stats.json").read_text())
    assert stats["funnel"]["rejected_by"]["selection"] == 2 and stats["reasons"]["selection: over_quota"] == 2
    assert sorted(p.name for p in (run_dir / "filtered").iterdir()) == ["kept", "rejected", "stats.json"]


def test_ablation_by_order_and_enabled(run_dir):
    assert _filter(run_dir, "--set", "correctness.enabled=false") == 0
    assert read_manifest(run_dir / "filtered" / "kept")["rows"] == 8
    assert _filter(run_dir, "--set", "order=[format,length]") == 0
    verdicts = json.loads(read_table(run_dir / "filtered" / "kept").to_pylist()[0]["verdicts"])
    assert set(verdicts) == {"format", "length"}


def test_worker_processes_give_the_same_result(run_dir):
    assert _filter(run_dir) == 0
    one = read_table(run_dir / "filtered" / "kept").drop_columns(["created_at"]).to_pylist()
    assert main(["filter", str(run_dir), "--no-progress", "--workers", "2"]) == 0
    two = read_table(run_dir / "filtered" / "kept").drop_columns(["created_at"]).to_pylist()
    assert one == two


def test_bad_inputs_are_named_and_write_nothing(tmp_path, run_dir, capsys):
    assert _filter(tmp_path / "nope") == 1
    assert f"{tmp_path / 'nope'}: no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _filter(tmp_path / "empty") == 1
    assert "traces: no manifest.json" in capsys.readouterr().err
    assert _filter(run_dir, "--set", "order=[format,sparkle]") == 1
    assert "field 'order': unknown filter 'sparkle'" in capsys.readouterr().err
    shard = next((run_dir / "traces").glob("part-*.parquet"))
    pq.write_table(pq.read_table(shard).drop_columns(["reasoning"]), shard)
    assert _filter(run_dir) == 1
    assert f"{shard}: missing required column 'reasoning'" in capsys.readouterr().err
    assert not (run_dir / "filtered").exists() and not list(run_dir.glob(".filter-*"))
    bad = pq.read_table(shard).append_column("reasoning", pa.array([1] * 8))
    pq.write_table(bad, shard)
    assert _filter(run_dir) == 1
    assert "column 'reasoning' has type int64, expected string" in capsys.readouterr().err


def test_decontamination_against_a_benchmark_file(run_dir, tmp_path):
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"problem": "Compute: What is 6 * 7? Give the exact value."}])
    assert main(["filter", str(run_dir), "--no-progress", "--workers", "2", "--set",
                 f"decontam.benchmarks=[{bench}]", "--set", "decontam.ngram=3"]) == 0
    stats = json.loads((run_dir / "filtered" / "stats.json").read_text())
    assert stats["funnel"]["rejected_by"]["decontam"] == 2 and stats["funnel"]["kept"] == 2
    rejected = [r for r in read_table(run_dir / "filtered" / "rejected").to_pylist() if r["reject_reason"] == "decontam"]
    assert {r["problem"] for r in rejected} == {"What is 6 * 7?"}
    assert json.loads(rejected[0]["verdicts"])["decontam"]["details"]["benchmark"] == str(bench)


def test_decontamination_reads_every_split_of_an_hf_dataset(tmp_path):
    """aime_2024 on the Hub has only a train split: forcing `test` used to fail; every split is read now."""
    from factory.filters.decontam import DecontamParams, build_index

    local = tmp_path / "aime_like"
    local.mkdir()
    write_jsonl(local / "train.jsonl", [{"problem": "Find the number of ordered pairs of integers", "answer": "3"}])
    write_jsonl(local / "validation.jsonl", [{"problem": "How many positive divisors does 2024 have", "answer": "4"}])
    index = build_index(DecontamParams(benchmarks=[f"hf:{local}"], ngram=4))
    assert index.problems == {f"hf:{local}": 2} and len(index.owner) == 5 + 4


def test_the_length_limit_defaults_to_the_generation_limit(run_dir):
    import yaml

    assert main(["filter", str(run_dir), "--no-progress", "--workers", "1"]) == 0
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    generated = resolved["generate"]["config"]["sampling"]["max_tokens"]
    assert generated == 32768 and resolved["filter"]["config"]["length"]["max_tokens"] == generated, "R1: 32k"


def test_stats_are_computed_without_the_reasoning_column(tmp_path):
    """stats.json comes from a polars scan of the small columns: shards that hold only those give the same."""
    from factory.filters.stats import STAT_COLUMNS, funnel_stats
    from factory.storage.records import FILTERED_SCHEMA

    rows = [{"prompt_id": "p1", "task": "math", "source": "s", "kept": True, "reject_reason": None,
             "verdicts": '{"length": {"ok": true, "score": 120}, "correctness": {"ok": true}}', "pass_rate": 0.5,
             "completion_tokens": 120, "teacher_model": "a"},
            {"prompt_id": "p1", "task": "math", "source": "s", "kept": False, "reject_reason": "correctness",
             "verdicts": '{"length": {"ok": true, "score": 80}, "correctness": {"ok": false, "reason": "wrong"}}',
             "pass_rate": 0.5, "completion_tokens": None, "teacher_model": "a"},
            {"prompt_id": "p2", "task": "code", "source": "s", "kept": False, "reject_reason": "length",
             "verdicts": '{"length": {"ok": false, "reason": "too_long", "score": 9000}, '
                         '"language": {"ok": true, "status": "skip", "reason": "skipped: rejected by length"}}',
             "pass_rate": None, "completion_tokens": 9000, "teacher_model": "b"}]
    for split, part in (("kept", rows[:1]), ("rejected", rows[1:])):
        (tmp_path / split).mkdir()
        schema = pa.schema([FILTERED_SCHEMA.field(c) for c in STAT_COLUMNS])
        pq.write_table(pa.Table.from_pylist(part, schema=schema), tmp_path / split / "part-0.parquet")
        (tmp_path / split / "manifest.json").write_text(json.dumps({"files": [{"file": "part-0.parquet",
                                                                               "rows": len(part)}],
                                                                    "rows": len(part)}))
    assert set(pq.read_schema(tmp_path / "kept" / "part-0.parquet").names) == set(STAT_COLUMNS)
    s = funnel_stats(tmp_path, ["length", "language", "correctness"], seconds=1.0)
    assert s.funnel == {"in": 3, "rejected_by": {"length": 1, "language": 0, "correctness": 1}, "kept": 1}
    assert s.failed_any == {"length": 1, "language": 0, "correctness": 1}
    assert s.by_teacher["a"] == {"in": 2, "kept": 1, "kept_share": 0.5, "mean_kept_tokens": 120}
    assert s.by_teacher["b"]["kept"] == 0
    assert s.skipped == {"language": 1}
    assert s.reasons == {"correctness: wrong": 1, "length: too_long": 1}
    assert s.pass_rate == {"by_task": {"math": 0.5}, "by_source": {"s": 0.5}, "prompts": 1}
    assert s.tokens["kept"]["p50"] == 120 and s.tokens["rejected"]["max"] == 9000


def test_passes_that_read_the_traces_in_another_order_stop_before_writing(run_dir, monkeypatch, capsys):
    """The row filters and the writing pass meet by row number: read in another order, the verdicts would land
    on other traces. The writing pass checks each row's prompt and stops; the previous output stays whole."""
    from factory.stages import filter as stage

    assert _filter(run_dir) == 0
    before = (run_dir / "filtered" / "stats.json").read_bytes()
    real = stage.iter_batches

    def reversed_rows(*args, **kwargs):
        for batch in real(*args, **kwargs):
            yield batch.take(pa.array(range(batch.num_rows - 1, -1, -1)))

    monkeypatch.setattr(stage, "iter_batches", reversed_rows)
    assert _filter(run_dir) != 0
    assert "the traces changed or were read in another order: nothing was written" in capsys.readouterr().err
    assert (run_dir / "filtered" / "stats.json").read_bytes() == before
    assert not list(run_dir.glob(".filter-*")), "no staging folder is left behind"
