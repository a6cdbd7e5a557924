import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.config.stages import PromptsConfig
from factory.core.errors import FactoryError
from factory.core.textutil import last_boxed
from factory.sources import load_prompts
from tests.conftest import write_jsonl


def _load(source, **kw):
    return load_prompts(PromptsConfig(source=str(source), **kw))


def test_jsonl_contract(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"problem": "1+1?", "answer": "2", "id": "a"},
        {"question": "2+2?", "answer": 4},
        {"prompt": "Write f.", "tests": "assert f() == 1"},
        {"problem": "pick", "task": "gym:chain_sum"},
    ])
    prompts = _load(path)
    assert [p.problem for p in prompts] == ["1+1?", "2+2?", "Write f.", "pick"]
    assert [p.task for p in prompts] == ["math", "math", "code", "gym:chain_sum"]
    assert prompts[1].reference_answer == "4" and prompts[2].tests == "assert f() == 1"
    assert json.loads(prompts[0].metadata) == {"id": "a"} and prompts[0].source == "file:p.jsonl"
    assert prompts[0].prompt_id == _load(path)[0].prompt_id


def test_duplicate_problems_are_kept_once(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"problem": "x"}, {"problem": "x"}, {"problem": "y"}])
    assert [p.problem for p in _load(path)] == ["x", "y"]


@pytest.mark.parametrize("lines,needle", [
    (['{"problem": "ok"}', '{"problem": "bad",'], r"p.jsonl:2:\d+: invalid JSON"),
    (['{"problem": "ok"}', '', '{"answer": "3"}'], r"p.jsonl:3: missing field 'problem \(or question/prompt\)'"),
    (['{"problem": ""}'], r"p.jsonl:1: field 'problem' must be a non-empty string"),
    (['["a"]'], r"p.jsonl:1: expected a JSON object"),
    (['{"problem": "x", "task": "poetry"}'], r"p.jsonl:1: unknown task 'poetry'"),
])
def test_bad_lines_are_named(tmp_path, lines, needle):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FactoryError, match=needle):
        _load(path)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FactoryError, match="no such prompt file"):
        _load(tmp_path / "nope.jsonl")
    (tmp_path / "p.csv").write_text("problem\nx\n")
    with pytest.raises(FactoryError, match="unsupported prompt file type '.csv'"):
        _load(tmp_path / "p.csv")


def test_parquet_and_field_mapping(tmp_path):
    pq.write_table(pa.table({"q": ["a?", "b?"], "sol": ["so \\boxed{1}", "\\boxed{\\frac{1}{2}}"]}), tmp_path / "p.parquet")
    prompts = _load(tmp_path / "p.parquet", problem_field="q", answer_field="sol", answer_from_boxed=True, limit=5)
    assert [(p.problem, p.reference_answer) for p in prompts] == [("a?", "1"), ("b?", "\\frac{1}{2}")]


def test_hf_dataset_from_local_files(tmp_path):
    # The same `datasets.load_dataset` call that reads `hf:AI-MO/NuminaMath-CoT` from the Hub, on a local folder.
    data = tmp_path / "numina"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [{"problem": f"p{i}", "solution": f"... \\boxed{{{i}}}"} for i in range(5)])
    prompts = _load(f"hf:{data}", answer_field="solution", answer_from_boxed=True, limit=3)
    assert [(p.problem, p.reference_answer) for p in prompts] == [("p0", "0"), ("p1", "1"), ("p2", "2")]
    assert prompts[0].source == f"hf:{data}"
    with pytest.raises(FactoryError, match="no column 'nope'"):
        _load(f"hf:{data}", problem_field="nope")
    with pytest.raises(FactoryError, match=r"hf:.*missing.*could not load"):
        _load(f"hf:{tmp_path / 'missing'}")


def test_gym_task_is_seeded_and_carries_scoring_metadata():
    a = _load("gym:chain_sum", size=5, seed=1)
    assert len(a) == 5 and all(p.task == "gym:chain_sum" and p.reference_answer for p in a)
    assert [p.prompt_id for p in a] == [p.prompt_id for p in _load("gym:chain_sum", size=5, seed=1)]
    assert {p.problem for p in a} != {p.problem for p in _load("gym:chain_sum", size=5, seed=2)}
    assert a[3].meta["gym"] == {"task": "chain_sum", "size": 5, "seed": 1, "index": 3}
    with pytest.raises(FactoryError, match="gym:no_such_task: unknown"):
        _load("gym:no_such_task")


def test_humaneval_ships_164_problems_with_tests():
    prompts = _load("humaneval")
    assert len(prompts) == 164 and all(p.task == "code" for p in prompts)
    first = prompts[0]
    assert "def has_close_elements" in first.problem and "check(has_close_elements)" in first.tests
    assert first.meta["task_id"] == "HumanEval/0"


@pytest.mark.parametrize("text,expected", [("a \\boxed{1} b \\boxed{2}", "2"), ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
                                           ("none", None), ("\\boxed{unclosed", None)])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("text,kind,name,license_id", [
    ("gym:chain_sum", "gym", "chain_sum", "apache-2.0"), ("hf:AI-MO/NuminaMath-CoT", "hf", "AI-MO/NuminaMath-CoT", "other"),
    ("humaneval", "humaneval", "humaneval", "mit"), ("data/p.jsonl", "file", "data/p.jsonl", "other")])
def test_one_parser_for_every_source_spec(text, kind, name, license_id):
    from factory.sources.spec import parse_source

    spec = parse_source(text)
    assert (spec.kind, spec.name, spec.text, spec.license_id) == (kind, name, text, license_id)


def test_known_sizes_without_loading(tmp_path):
    from factory.sources.spec import parse_source

    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "a"}\n\n{"problem": "b"}\n')
    assert parse_source(str(path)).known_size(16) == 2
    assert parse_source("gym:chain_sum").known_size(16) == 16 and parse_source("humaneval").known_size(16) == 164
    assert parse_source("hf:org/name").known_size(16) is None


def test_repeated_problems_are_merged_out_loud_and_conflicting_references_stop(tmp_path, capsys):
    """Issue 22, item 7: merging by prompt_id is said, with counts; two copies of a problem with different
    reference answers are an error naming both lines, not one answer dropped."""
    rows = [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "4"}, {"problem": "1+1?", "answer": "2"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # a blank line: line numbers, not row numbers
    assert [p.problem for p in _load(path)] == ["1+1?", "2+2?"]
    assert "1 of 3 prompts repeat an earlier problem" in " ".join(capsys.readouterr().err.split())
    write_jsonl(path, [*rows, {"problem": "2+2?", "answer": "5"}])
    with pytest.raises(FactoryError, match=r"p\.jsonl:4: the same problem as .*p\.jsonl:2 with another reference "
                                           r"answer \('5' against '4'\)"):
        _load(path)
