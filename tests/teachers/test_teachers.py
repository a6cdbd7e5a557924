"""Several teachers in one run (`generate.teachers`): each samples every prompt, traces carry their teacher and a
sample index of their own, the stats break down by teacher, and each teacher's samples are cached apart."""

import json

import pytest

from factory.config.stages import GenerateConfig
from factory.filters.config import FilterConfig
from factory.stages import filter as filter_stage
from factory.stages import generate
from factory.storage.shards import read_table
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
    assert good.served() == 6 and bad.served() == 6 and report.samples == 12
    assert [t.teacher for t in report.by_teacher] == ["openai:good", "openai:bad"]
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
    from factory.view import create_app

    page = create_app(tmp_path / "run").test_client().get("/").get_data(as_text=True)
    assert "By teacher" in page and "<td>bad</td><td>6</td><td>0</td><td>0.000</td>" in page
    generate.run(cfg)
    assert good.served() == 6 and bad.served() == 6, "a rerun buys nothing"


def test_several_teachers_refuse_what_they_cannot_do_yet(tmp_path):
    with pytest.raises(ValueError, match="several teachers do not take sampling.adaptive"):
        _cfg(tmp_path, [("a", "http://127.0.0.1:1/v1"), ("b", "http://127.0.0.1:1/v1")],
             sampling={"n": 2, "adaptive": {"enabled": True}})


def test_teacher_priority_keeps_one_trace_per_prompt_from_the_preferred_teacher(tmp_path, fake_server):
    right = {p: (str(i + 1), 1.0) for i, p in enumerate(PROBLEMS)}
    _, a_url = fake_server(model="a", correct=right)
    # b writes longer traces (the shortest rule would pick a's), and is wrong on problem 1
    answers = {0: "1", 1: "7", 2: "3"}
    _, b_url = fake_server(model="b", replies={p: [f"<think>\nTeacher b works on {p} step by step, slowly, "
                                                   f"checking each step twice.\n</think>\n\nThe answer is "
                                                   f"\\boxed{{{answers[i]}}}."] for i, p in enumerate(PROBLEMS)})
    generate.run(_cfg(tmp_path, [("a", a_url), ("b", b_url)]))
    filter_stage.run(FilterConfig.model_validate({
        "run_dir": str(tmp_path / "run"), "progress": False,
        "selection": {"max_per_prompt": 1, "strategy": "teacher_priority", "teacher_priority": ["b"]}}))
    kept = read_table(tmp_path / "run" / "filtered" / "kept").to_pylist()
    by_problem = {r["problem"]: r["teacher_model"] for r in kept}
    # b is preferred wherever it has a verified trace; problem 1 only a has
    assert by_problem == {PROBLEMS[0]: "b", PROBLEMS[1]: "a", PROBLEMS[2]: "b"}
    stats = json.loads((tmp_path / "run" / "filtered" / "stats.json").read_text())
    assert stats["by_teacher"]["a"]["kept"] == 1 and stats["by_teacher"]["b"]["kept"] == 2


def test_teacher_priority_needs_the_teachers_named():
    with pytest.raises(ValueError, match="teacher_priority needs teacher_priority"):
        FilterConfig.model_validate({"selection": {"max_per_prompt": 1, "strategy": "teacher_priority"}})


def test_one_model_name_on_two_servers_is_two_teachers_each_asked(tmp_path, fake_server):
    """Issue 35: the sample's identity includes the endpoint (host, port and path; never a credential), so the
    second server is asked, not served the first one's answers from the cache; `cache_identity: model` opts in to
    sharing for one model behind two URLs."""
    from factory.config.teacher import TeacherConfig
    from factory.generation.plan import model_key

    right = {p: (str(i + 1), 1.0) for i, p in enumerate(PROBLEMS)}
    first, first_url = fake_server(model="m", correct=right)
    second, second_url = fake_server(model="m", correct=right)
    report = generate.run(_cfg(tmp_path, [("m", first_url), ("m", second_url)]))
    assert first.served() == 6 and second.served() == 6 and report.samples == 12
    shared = _cfg(tmp_path, [("m", first_url), ("m", second_url)])
    shared = shared.model_copy(update={"out": str(tmp_path / "shared")})
    shared = shared.model_copy(update={"teachers": [t.model_copy(update={"cache_identity": "model"})
                                                    for t in shared.teachers]})
    generate.run(shared)
    assert first.served() == 12 and second.served() == 6, "shared: the second teacher's samples are the first's"
    keyed = model_key(TeacherConfig(engine="openai", model="m", base_url="https://user:secret@Host.example:8443/v1/?k=1"))
    assert keyed == {"model": "m", "endpoint": "host.example:8443/v1"}
