"""`factory pairs`: preference pairs from the filter's verdicts, counted per kind, no trace on both sides, in TRL's
conversational preference format; from the CLI and in a pipeline."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from factory.cli import main
from factory.storage.records import TRACE_SCHEMA, Prompt, Trace
from factory.storage.shards import ShardWriter, read_manifest, read_table

MIXED = "我们把两个数相加，二加二等于四，这是一个简单的加法问题，答案很清楚。" * 3


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{k} adds two and two" for k in range(n))


# (problem, [(reasoning, answer, tokens, truncated)]): P0 has every kind of trace, P1 only a wrong one, P2 one right.
RUN = {
    "P0": [(_words(4, "a"), "\\boxed{4}", 20, False), (_words(20, "b"), "\\boxed{4}", 100, False),
           (_words(12, "c"), "\\boxed{4}", 60, False), (_words(8, "d"), "\\boxed{5}", 40, False),
           (MIXED, "\\boxed{4}", 80, False), (_words(30, "e"), "", 200, True)],
    "P1": [(_words(6, "f"), "\\boxed{7}", 30, False)],
    "P2": [(_words(5, "g"), "\\boxed{4}", 25, False)],
}


def write_traces(run_dir) -> None:
    with ShardWriter(run_dir / "traces", TRACE_SCHEMA, rows_per_shard=4) as w:
        for problem, samples in RUN.items():
            p = Prompt(source="test", task="math", problem=f"{problem}: what is 2 + 2?", reference_answer="4")
            messages = json.dumps([{"role": "user", "content": p.problem}])
            for i, (reasoning, answer, tokens, truncated) in enumerate(samples):
                t = Trace(prompt=p, sample_index=i, teacher_model="t", engine="hf", sampling="{}", messages=messages,
                          reasoning=reasoning, answer=answer, raw_completion=f"<think>{reasoning}</think>{answer}",
                          reasoning_source="think_tags", finish_reason="length" if truncated else "stop",
                          truncated=truncated, completion_tokens=tokens)
                w.write_rows([t.to_row()])
        w.close()


@pytest.fixture
def filtered_run(tmp_path):
    write_traces(tmp_path)
    assert main(["filter", str(tmp_path), "--no-progress", "--workers", "1"]) == 0
    return tmp_path


def _pairs(run_dir, *args: str) -> tuple[list[dict], dict]:
    assert main(["pairs", str(run_dir), *args]) == 0
    return read_table(run_dir / "pairs").to_pylist(), json.loads((run_dir / "pairs" / "stats.json").read_text())


def _side(row: dict, side: str) -> tuple[str, int]:
    return row["prompt_id"], row[f"{side}_sample_index"]


def test_pairs_are_counted_per_kind_and_every_unpaired_prompt_is_counted_with_why(filtered_run):
    rows, stats = _pairs(filtered_run)
    by_kind = {r["kind"]: r for r in rows}
    assert stats["by_kind"] == {"correct_vs_wrong": 1, "correct_vs_flawed": 1, "short_vs_long": 1}
    assert stats["pairs"] == len(rows) == 3 and stats["prompts"] == 3
    assert stats["unpaired"] == {
        "correct_vs_wrong": {"no verified trace": 1, "no wrong trace": 1},
        "correct_vs_flawed": {"no verified trace": 1, "no flawed trace": 1},
        "short_vs_long": {"fewer than two verified traces": 2}}
    # chosen: the shortest verified (P0's sample 0); the wrong one is sample 3, a flawed one 4 (language) or 5
    assert {k: r["chosen_sample_index"] for k, r in by_kind.items()} == dict.fromkeys(by_kind, 0)
    assert by_kind["correct_vs_wrong"]["rejected_sample_index"] == 3
    assert by_kind["correct_vs_wrong"]["rejected_reason"] == "correctness"
    flawed = by_kind["correct_vs_flawed"]
    assert (flawed["rejected_sample_index"], flawed["rejected_reason"]) in {(4, "language"), (5, "format")}  # 5: truncated, no answer
    longer = by_kind["short_vs_long"]
    assert longer["rejected_sample_index"] in (1, 2) and longer["chosen_tokens"] <= 0.6 * longer["rejected_tokens"]
    assert longer["rejected_reason"] is None
    assert stats["rejected_reasons"] == {"correctness": 1, flawed["rejected_reason"]: 1, "verified": 1}
    for r in rows:
        assert _side(r, "chosen") != _side(r, "rejected")
        assert json.loads(r["chosen_verdicts"])["correctness"]["ok"] is True


def test_the_pairs_are_trl_conversational_preference_data(filtered_run):
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    _pairs(filtered_run)
    files = [str(filtered_run / "pairs" / f["file"]) for f in read_manifest(filtered_run / "pairs")["files"]]
    data = load_dataset("parquet", data_files=files, split="train")
    example = data[0]
    assert is_conversational(example)
    assert example["prompt"] == [{"role": "user", "content": "P0: what is 2 + 2?"}]
    assert [m["role"] for m in example["chosen"]] == ["assistant"] == [m["role"] for m in example["rejected"]]
    assert example["chosen"][0]["content"] == f"<think>\n{_words(4, 'a')}\n</think>\n\n\\boxed{{4}}"

    class Template:  # the R1-Distill chat format's shape: what maybe_apply_chat_template needs of a tokenizer
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **_):
            text = "".join(f"<|{m['role']}|>{m['content']}" for m in messages)
            return text + ("<|assistant|>" if add_generation_prompt else "")

    text = maybe_apply_chat_template(example, Template())
    assert text["prompt"].endswith("<|assistant|>") and text["chosen"].startswith("<think>")


def test_several_pairs_per_prompt_never_reuse_a_trace_and_a_seed_repeats_them(filtered_run):
    args = ["--kind", "short_vs_long", "--kind", "correct_vs_flawed", "--per-prompt", "3", "--chosen", "random",
            "--seed", "7", "--set", "max_length_ratio=0.9"]
    rows, stats = _pairs(filtered_run, *args)
    again, _ = _pairs(filtered_run, *args)
    assert again == rows
    for kind in ("short_vs_long", "correct_vs_flawed"):
        sides = [s for r in rows if r["kind"] == kind for s in (_side(r, "chosen"), _side(r, "rejected"))]
        assert len(sides) == len(set(sides)), f"{kind}: a trace used twice"
    # P0's verified traces are 20, 60 and 100 tokens: one pair within 0.9 at most uses two of the three
    assert stats["by_kind"] == {"short_vs_long": 1, "correct_vs_flawed": 2}


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "max_length_ratio=1.5"], "max_length_ratio"),
    (["--kind", "best_vs_worst"], "kinds"),
    (["--set", "flaws=[correctness]"], "not a quality filter"),
])
def test_bad_settings_are_one_line_errors(filtered_run, capsys, args, message):
    assert main(["pairs", str(filtered_run), *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (filtered_run / "pairs").exists()


def test_a_run_not_filtered_yet_is_an_error_that_writes_nothing(tmp_path, capsys):
    write_traces(tmp_path)
    assert main(["pairs", str(tmp_path)]) != 0
    assert "filtered/kept" in capsys.readouterr().err and not (tmp_path / "pairs").exists()


def test_a_killed_run_leaves_no_partial_shard_and_the_rerun_clears_its_leftovers(filtered_run):
    code = ("import os, sys; from factory.storage import shards\n"
            "close = shards.ShardWriter.close\n"
            "def die(self):\n"
            "    self._flush(); os.kill(os.getpid(), 9)\n"  # kill -9 with a shard half written in the temp dir
            "shards.ShardWriter.close = die\n"
            "from factory.cli import main; sys.exit(main(['pairs', sys.argv[1]]))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, str(filtered_run)], env=env, capture_output=True)
    assert proc.returncode == -9
    assert not (filtered_run / "pairs").exists() and list(filtered_run.glob(".pairs.tmp-*"))
    rows, stats = _pairs(filtered_run)
    assert len(rows) == stats["pairs"] == 3 and not list(filtered_run.glob(".pairs.tmp-*"))


def test_pairs_is_a_pipeline_stage_priced_by_the_dry_run(filtered_run, capsys):
    doc = {"name": "prefer", "run_dir": str(filtered_run), "stages": ["pairs"],
           "pairs": {"kinds": ["correct_vs_wrong"], "per_prompt": 2}}
    path = filtered_run / "prefer.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "│ pairs │ correct_vs_wrong; up to 2 per" in capsys.readouterr().err
    assert main(["run", str(path)]) == 0
    state = json.loads((filtered_run / "pipeline_state.json").read_text())
    assert state["pairs"]["summary"] == {"pairs": 1, "by_kind": {"correct_vs_wrong": 1}}
    assert main(["run", str(path)]) == 0  # up to date: skipped
    assert "skip" in capsys.readouterr().err.lower()
