"""`factory prefer` on the tiny student, on CPU: TRL's DPOTrainer on pairs in the format `factory pairs` writes."""

import json

import pytest

from factory.cli import main
from factory.core.chat_templates import assistant_text
from factory.core.errors import FactoryError
from factory.storage.records import PAIRS_SCHEMA
from factory.storage.shards import write_shards
from train.dpo import check_template


def _pair(i: int, kind: str = "correct_vs_wrong") -> dict:
    right, wrong = 2 * i, 2 * i + 1
    prompt = [{"role": "user", "content": f"What is {i} + {i}?"}]
    side = lambda answer, words: [{"role": "assistant", "content": assistant_text(  # noqa: E731
        " ".join([f"We add {i} and {i}."] * words), f"\\boxed{{{answer}}}")}]
    return {"prompt": prompt, "chosen": side(right, 1), "rejected": side(wrong, 3), "kind": kind,
            "prompt_id": f"p{i}", "source": "test", "task": "math", "chosen_teacher": "t", "rejected_teacher": "t",
            "chosen_sample_index": 0, "rejected_sample_index": 1, "chosen_tokens": 10, "rejected_tokens": 30,
            "rejected_reason": "correctness", "chosen_verdicts": "{}", "rejected_verdicts": "{}"}


def write_pairs(run_dir, n: int = 8, kind: str = "correct_vs_wrong"):
    write_shards(run_dir / "pairs", [_pair(i, kind) for i in range(n)], PAIRS_SCHEMA)
    return run_dir


def _metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_dpo_widens_the_margin_and_writes_a_servable_model(tmp_path):
    run = write_pairs(tmp_path / "run")
    assert main(["prefer", str(run), "--student", "tiny", "--max-steps", "8", "--no-progress", "--set", "lr=5e-3",
                 "--set", "batch_size=4", "--set", "grad_accum=1", "--set", "warmup_ratio=0",
                 "--set", "save_steps=4"]) == 0
    out = run / "prefer" / "tiny"
    rows = [r for r in _metrics(out) if "rewards/margins" in r]
    assert len(rows) == 8 and rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    assert rows[-1]["rewards/accuracies"] >= 0.75
    summary = json.loads((out / "prefer_summary.json").read_text())
    assert summary["steps"] == 8 and summary["data"]["pairs"] == 8 and summary["data"]["dropped_overlong"] == 0
    assert summary["last"]["rewards/margins"] == rows[-1]["rewards/margins"] and summary["loss_type"] == "sigmoid"
    assert [r["rewards/accuracies"] for r in summary["curve"]] == [r["rewards/accuracies"] for r in rows]
    assert (out / "prefer.png").stat().st_size > 1000 and (out / "checkpoint-4" / "COMPLETE").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "final")
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 1 + 1?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3
    assert "prefer" in (run / "config.resolved.yaml").read_text()


def test_other_losses_lora_and_overlong_pairs_dropped_and_counted(tmp_path):
    run = tmp_path / "run"
    long_pairs = [_pair(i) for i in range(8)]
    long_pairs[0]["rejected"][0]["content"] = assistant_text("word " * 400, "\\boxed{1}")
    write_shards(run / "pairs", long_pairs, PAIRS_SCHEMA)
    assert main(["prefer", str(run), "--student", "tiny", "--max-steps", "2", "--no-progress", "--lora",
                 "--loss-type", "ipo", "--beta", "0.5", "--set", "lora_r=4", "--set", "max_length=200"]) == 0
    summary = json.loads((run / "prefer" / "tiny" / "prefer_summary.json").read_text())
    assert summary["data"]["dropped_overlong"] == 1 and summary["data"]["pairs"] == 7
    assert summary["loss_type"] == "ipo" and summary["beta"] == 0.5
    assert (run / "prefer" / "tiny" / "final" / "adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "kinds=[short_vs_long]"], "no pair of the kinds short_vs_long"),
    (["--set", "max_length=8"], "every pair is longer than max_length"),
    (["--set", "trl.beta=0.3"], "prefer.trl.beta: the factory sets it"),
    (["--loss-type", "best"], "field 'loss_type'"),
])
def test_bad_settings_fail_before_training_in_one_line(tmp_path, capsys, args, message):
    run = write_pairs(tmp_path / "run", n=2)
    assert main(["prefer", str(run), "--student", "tiny", "--no-progress", *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list((run / "prefer").glob("*/checkpoint-*"))


def test_a_run_without_pairs_is_one_line(tmp_path, capsys):
    assert main(["prefer", str(tmp_path), "--student", "tiny", "--no-progress"]) == 1
    assert "pairs: no manifest.json" in capsys.readouterr().err


def test_a_template_that_splits_prompt_and_completion_wrongly_is_refused():
    pair = _pair(1)

    class Template:
        name_or_path = "odd"

        def __init__(self, prefill: str = "", reorder: bool = False):
            self.prefill, self.reorder = prefill, reorder

        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
            turns = [f"<{m['role']}>{m['content']}" for m in messages]
            text = "".join(reversed(turns) if self.reorder else turns)
            return text + (f"<assistant>{self.prefill}" if add_generation_prompt else "")

    check_template(Template(), pair, "pairs")  # a plain template passes
    with pytest.raises(FactoryError, match="prefills <think>"):
        check_template(Template(prefill="<think>"), pair, "pairs")
    with pytest.raises(FactoryError, match="does not render the prompt as the start"):
        check_template(Template(reorder=True), pair, "pairs")


def test_resume_continues_from_the_last_complete_checkpoint(tmp_path):
    run = write_pairs(tmp_path / "run", n=4)
    common = ["prefer", str(run), "--student", "tiny", "--no-progress", "--set", "batch_size=2", "--set",
              "grad_accum=1", "--set", "save_steps=2"]
    assert main([*common, "--max-steps", "2"]) == 0
    out = run / "prefer" / "tiny"
    assert (out / "checkpoint-2" / "COMPLETE").exists()
    assert main([*common, "--max-steps", "4", "--resume"]) == 0
    summary = json.loads((out / "prefer_summary.json").read_text())
    assert summary["resumed_from"] == str(out / "checkpoint-2") and summary["steps"] == 4


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_prefer_is_a_pipeline_stage_in_processes_of_its_own(tmp_path, capsys):
    import yaml

    run = write_pairs(tmp_path / "run", n=4)
    (run / "pairs" / "stats.json").write_text(json.dumps({"by_kind": {"correct_vs_wrong": 4}}))  # as pairs writes
    doc = {"name": "dpo", "run_dir": str(run), "stages": ["prefer"],
           "prefer": {"student": "tiny", "max_steps": 2, "batch_size": 2, "grad_accum": 1, "progress": False}}
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(doc))
    assert main(["run", str(tmp_path / "dpo.yaml"), "--dry-run"]) == 0
    shown = " ".join(capsys.readouterr().err.replace("│", " ").split())  # the table's cells, unwrapped
    assert "sigmoid loss, beta 0.1" in shown and "4 pairs" in shown, shown
    assert main(["run", str(tmp_path / "dpo.yaml")]) == 0
    state = json.loads((run / "pipeline_state.json").read_text())
    assert state["prefer"]["summary"]["steps"] == 2 and state["prefer"]["summary"]["pairs"] == 4
    assert (run / "prefer" / "tiny" / "final" / "config.json").exists()


def test_dpo_trains_on_what_factory_pairs_writes(tmp_path):
    from tests.stages.test_pairs import write_traces

    write_traces(tmp_path)
    assert main(["filter", str(tmp_path), "--no-progress", "--workers", "1"]) == 0
    assert main(["pairs", str(tmp_path)]) == 0
    assert main(["prefer", str(tmp_path), "--student", "tiny", "--max-steps", "1", "--no-progress",
                 "--set", "batch_size=2", "--set", "grad_accum=1"]) == 0
    summary = json.loads((tmp_path / "prefer" / "tiny" / "prefer_summary.json").read_text())
    assert summary["data"]["by_kind"] == {"correct_vs_wrong": 1, "correct_vs_flawed": 1, "short_vs_long": 1}
    assert summary["steps"] == 1 and "rewards/margins" in summary["last"]


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_two_processes_over_gloo_train_one_model(tmp_path):
    run = write_pairs(tmp_path / "run", n=8)
    assert main(["prefer", str(run), "--student", "tiny", "--max-steps", "2", "--no-progress", "--launch",
                 "cpu_gloo", "--num-processes", "2", "--set", "batch_size=2", "--set", "grad_accum=1"]) == 0
    summary = json.loads((run / "prefer" / "tiny" / "prefer_summary.json").read_text())
    assert summary["processes"] == 2 and summary["distributed"] == "MULTI_CPU" and summary["steps"] == 2
    assert (run / "prefer" / "tiny" / "final" / "config.json").exists()
