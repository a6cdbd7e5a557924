"""Several teachers in one run (`generate.teachers`): each samples every prompt, traces carry their teacher and a
sample index of their own, the stats break down by teacher, and each teacher's samples are cached apart."""

import json

import pytest

from factory.config import FilterConfig, GenerateConfig
from factory.shards import read_table
from factory.stages import filter as filter_stage
from factory.stages import generate
from tests.conftest import write_jsonl

PROBLEMS = [f"Problem {i}: what is {i} + 1?" for i in range(3)]


def _cfg(tmp_path, urls, **extra):
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, "answer": str(i + 1)} for i, p in enumerate(PROBLEMS)])
    teachers = [{"engine": "openai", "model": model, "base_url": url} for model, url in urls]
    return GenerateConfig.model_validate({"out": str(tmp_path / "run"), "prompts": {"source": str(tmp_path / "p.jsonl")},
                                          "teachers": teachers, "sampling": {"n": 2}, "progress": False, **extra})


def test_every_teacher_samples_every_prompt_and_the_stats_say_which(tmp_path, fake_server):
    right = {p: (str(i + 1), 1.0) for i, p in enumerate(PROBLEMS)}
    good, good_url = fake_server(model="good", correct=right)
    bad, bad_url = fake_server(model="bad", correct={p: (a, 0.0) for p, (a, _) in right.items()})
    cfg = _cfg(tmp_path, [("good", good_url), ("bad", bad_url)])
    report = generate.run(cfg)
    assert good.served() == 6 and bad.served() == 6 and report["samples"] == 12
    assert [t["teacher"] for t in report["by_teacher"]] == ["openai:good", "openai:bad"]
    rows = read_table(tmp_path / "run" / "traces").to_pylist()
    assert len({(r["prompt_id"], r["sample_index"]) for r in rows}) == 12
    assert {r["sample_index"] for r in rows if r["teacher_model"] == "bad"} == {2, 3}
    filter_stage.run(FilterConfig(run_dir=str(tmp_path / "run"), progress=False))
    stats = json.loads((tmp_path / "run" / "filtered" / "stats.json").read_text())
    assert stats["by_teacher"]["good"]["kept"] > 0 and stats["by_teacher"]["bad"]["kept"] == 0
    assert stats["by_teacher"]["bad"]["in"] == 6
    from factory.cli import main

    assert main(["card", str(tmp_path / "run")]) == 0
    card = (tmp_path / "run" / "card" / "README.md").read_text()
    assert "## By teacher" in card and "| `bad` | 6 | 0 | 0.000 |" in card
    generate.run(cfg)
    assert good.served() == 6 and bad.served() == 6, "a rerun buys nothing"


def test_several_teachers_refuse_what_they_cannot_do_yet(tmp_path):
    with pytest.raises(ValueError, match="several teachers do not take sampling.adaptive"):
        _cfg(tmp_path, [("a", "http://127.0.0.1:1/v1"), ("b", "http://127.0.0.1:1/v1")],
             sampling={"n": 2, "adaptive": {"enabled": True}})
