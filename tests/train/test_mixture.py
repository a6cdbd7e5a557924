"""`distill.mix`: R1's reasoning + non-reasoning mixture, counted, weighted, and trained in the right format."""

import json

import pytest

from factory.cli import main
from factory.config.stages import DistillConfig, MixSource
from factory.core.errors import FactoryError
from tests.conftest import write_jsonl
from tests.train.helpers import write_kept
from train.mixture import load_items
from train.sft_data import IGNORE, build_samples


def _files(tmp_path):
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"instruction": f"Say hello {i}", "output": f"Hello {i}!"}
                                                 for i in range(6)])
    msgs = write_jsonl(tmp_path / "msgs.jsonl", [{"messages": [
        {"role": "user", "content": f"What is {i} * 2?"},
        {"role": "assistant", "content": f"<think>\nDouble {i}.\n</think>\n\n{2 * i}"}]} for i in range(4)])
    return chat, msgs


def test_sources_counts_and_weights(tmp_path):
    run = write_kept(tmp_path / "run", n=8)
    chat, msgs = _files(tmp_path)
    cfg = DistillConfig(run_dir=str(run), mix=[MixSource(source=str(run), weight=0.5),
                                               MixSource(source=str(chat), count=4, reasoning=False),
                                               MixSource(source=str(msgs), weight=2)])
    items, report = load_items(cfg)
    assert [(r["available"], r["used"]) for r in report] == [(8, 4), (6, 4), (4, 8)] and len(items) == 16
    assert sum(i.reasoning is None for i in items) == 4
    doubled = [i for i in items if i.source == str(msgs)]
    assert {i.reasoning for i in doubled} == {f"Double {k}." for k in range(4)} and doubled[0].answer.isdigit()
    again, _ = load_items(cfg)
    assert [(i.source, i.answer) for i in again] == [(i.source, i.answer) for i in items], "seeded"


def test_non_reasoning_samples_train_the_answer_alone_or_after_an_empty_think(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    from factory.core.chat_templates import CHATML

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.chat_template = CHATML
    chat, _ = _files(tmp_path)
    for empty_think, expected in [(False, "Hello 0!<|im_end|>\n"), (True, "<think>\n\n</think>\n\nHello 0!<|im_end|>\n")]:
        items, _ = load_items(DistillConfig(mix=[MixSource(source=str(chat), reasoning=False,
                                                           empty_think=empty_think)]))
        items = [i for i in items if i.answer == "Hello 0!"]
        data, report = build_samples(items, tok, 512, show=False)
        trained = tok.decode([t for t in data["labels"][0] if t != IGNORE])
        assert trained == expected and report.samples == 1


def test_bad_mixtures_are_one_line_errors(tmp_path):
    chat, _ = _files(tmp_path)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "no prompt here"}])
    for mix, needle in [([MixSource(source=str(chat), count=99)], "count 99 but only 6 samples"),
                        ([MixSource(source=str(bad))], "bad.jsonl: row 1: needs `messages`"),
                        ([MixSource(source=str(tmp_path / "nope.txt"))], "not a run directory")]:
        with pytest.raises(FactoryError, match=needle):
            load_items(DistillConfig(mix=mix))


def test_distill_trains_on_the_mixture_and_records_it(tmp_path):
    run = write_kept(tmp_path / "run", n=8)
    chat, _ = _files(tmp_path)
    mix = json.dumps([{"source": str(run)}, {"source": str(chat), "reasoning": False, "empty_think": True}])
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "2", "--no-progress",
                 "--set", f"mix={mix}"]) == 0
    summary = json.loads((run / "student" / "tiny" / "distill_summary.json").read_text())
    assert [(m["source"], m["reasoning"], m["used"]) for m in summary["mixture"]] == [(str(run), True, 8),
                                                                                        (str(chat), False, 6)]
    assert summary["data"]["samples"] == 14
