"""The surfaces the fourth phase added (adaptive sampling, budgets, ablations, the priced dry run, local benchmark
files, `eval --compare`, push's dry run) under a hostile user (issue 36): every refusal is one line, `error: ...`,
exit 1, no traceback, naming the file, line or field, and every file that was there is byte for byte as it was."""

import hashlib
import json
from pathlib import Path

import pytest

from factory.cli import main
from tests.conftest import REPO, write_jsonl

NO_SERVER = ["--teacher", "openai:m", "--base-url", "http://127.0.0.1:9/v1", "--no-progress"]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def one_line_error(root: Path, capsys, argv: list[str], needle: str) -> str:
    before = snapshot(root)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1] if err else ""
    assert last.startswith("error: ") and "Traceback" not in err, err
    assert needle in last, last
    assert snapshot(root) == before, "no file was written, changed or removed"
    return last


@pytest.fixture
def prompts(run_env):
    write_jsonl(run_env / "ok.jsonl", [{"problem": "1+1?", "answer": "2"}])
    write_jsonl(run_env / "noref.jsonl", [{"problem": "1+1?"}, {"problem": "2+2?", "answer": "4"}])
    return run_env


@pytest.mark.parametrize("sets, needle", [
    (["teacher.extra_body={n: 4}"], "field 'teacher.extra_body': 'n' cannot be set in extra_body"),
    (["teacher.extra_body={model: other}"], "'model' cannot be set in extra_body: set teacher.model"),
    (["teacher.extra_body={messages: []}"], "'messages' cannot be set in extra_body"),
    (["sampling.adaptive.enabled=true", "sampling.adaptive.until_kept=20"],
     "until_kept (20) is more than max_n (16): no prompt could reach it"),
    (["sampling.adaptive.enabled=true", "sampling.adaptive.settings={length: {max_tokens: -5}}"],
     "field 'sampling.adaptive.settings.length.max_tokens': Input should be greater than or equal to 1"),
    (["sampling.adaptive.enabled=true", "sampling.adaptive.settings={length: {foo: 1}}"],
     "field 'sampling.adaptive.settings.length.foo': unknown field"),
    (["sampling.adaptive.enabled=true", "sampling.adaptive.filters=[correctness, correctness]"],
     "field 'sampling.adaptive.filters': a filter is listed twice"),
])
def test_generate_settings_that_would_mislead_are_refused(prompts, capsys, sets, needle):
    argv = ["generate", "--prompts", "ok.jsonl", "--out", "run", *NO_SERVER]
    for s in sets:
        argv += ["--set", s]
    one_line_error(prompts, capsys, argv, needle)


def test_adaptive_sampling_without_a_verifier_is_refused(prompts, capsys):
    last = one_line_error(prompts, capsys, ["generate", "--prompts", "noref.jsonl", "--out", "run", *NO_SERVER,
                                            "--set", "sampling.adaptive.enabled=true"], "sampling.adaptive needs")
    assert last.startswith("error: noref.jsonl: ") and "1 of 2 prompts have none" in last


def test_n_with_adaptive_sampling_is_said_to_be_unused(prompts, capsys):
    assert main(["generate", "--prompts", "ok.jsonl", "--out", "run", *NO_SERVER, "--n", "8",
                 "--set", "sampling.adaptive.enabled=true"]) == 1  # no server: it stops at the preflight
    err = capsys.readouterr().err
    assert "warning: sampling.n=8 is not used: sampling.adaptive decides" in " ".join(err.split())


# --- files where a config is expected ----------------------------------------------------------------------------
def test_a_directory_or_a_list_where_a_config_is_expected(run_env, capsys):
    (run_env / "pipelines").mkdir()
    (run_env / "ab.yaml").write_text(f"name: x\nbase: {run_env / 'pipelines'}\ndecide_by: e\n"
                                        "variants: [{name: a, set: {x: 1}}]\n")
    one_line_error(run_env, capsys, ["run", "pipelines", "--dry-run"], "pipelines: is a directory, not a config")
    one_line_error(run_env, capsys, ["ablate", "pipelines", "--dry-run"], "pipelines: is a directory")
    one_line_error(run_env, capsys, ["ablate", "ab.yaml", "--dry-run"], "pipelines: is a directory")
    quickstart = str(REPO / "pipelines" / "quickstart.yaml")
    one_line_error(run_env, capsys, ["run", quickstart, "--dry-run", "--set", "plan=[1,2]"],
                   "plan: expected a mapping of fields, got list")


def test_a_config_file_named_like_a_secret_keeps_its_error_readable(run_env, capsys):
    (run_env / "api_key.yaml").write_text("x: [\n")
    last = one_line_error(run_env, capsys, ["run", "api_key.yaml", "--dry-run"], "api_key.yaml:2:1: invalid YAML")
    assert "***" not in last


# --- local benchmark files ---------------------------------------------------------------------------------------
GPQA = {"Question": "Which?", "Correct Answer": "a", "Incorrect Answer 1": "b", "Incorrect Answer 2": "c",
        "Incorrect Answer 3": "d"}


def _lcb(**change):
    row = {"question_title": "q", "question_content": "Add.", "platform": "atcoder", "question_id": "q1",
           "contest_id": "c", "contest_date": "2024-09-01T00:00:00", "difficulty": "easy", "starter_code": "",
           "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
           "private_test_cases": "", "metadata": "{}"}
    return {**row, **change}


def _write(path: Path, content) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        write_jsonl(path, content)
    return path.name


@pytest.mark.parametrize("benchmark, name, content, needle", [
    ("gpqa-diamond", "q.jsonl", [{**GPQA, "Question": None}], "b.jsonl: gpqa-diamond: row 0: column 'Question' is"),
    ("gpqa-diamond", "q.jsonl", [{**GPQA, "Incorrect Answer 2": "a"}], "'a' is also listed as an incorrect one"),
    ("gpqa-diamond", "q.jsonl", '{"Question": "x"}\n{"Question": \n', "q.jsonl:2:14: invalid JSON"),
    ("gpqa-diamond", "q.jsonl", "", "q.jsonl: no rows: an empty benchmark file"),
    ("gpqa-diamond", "q.jsonl", "[1, 2]\n", "q.jsonl:1: expected a JSON object, got list"),
    ("gpqa-diamond", "q.parquet", b"PAR1 not parquet", "q.parquet: not a readable Parquet file"),
    ("gpqa-diamond", "q.csv", "Question,Correct Answer\nx,y,z,w\n", "q.csv: not a readable CSV file"),
    ("livecodebench", "l.jsonl", [_lcb(metadata="{not json")], "livecodebench: row 0: metadata is not JSON"),
    ("livecodebench", "l.jsonl", [_lcb(metadata="[1]")], "metadata should be a JSON object, got list"),
    ("livecodebench", "l.jsonl", [_lcb(question_content=None)], "row 0: question_content is empty or not text"),
    ("livecodebench", "l.jsonl", [_lcb(public_test_cases='{"input": "1"}')],
     "row 0: public_test_cases: should be a list of {input, output, testtype}"),
    ("livecodebench", "l.jsonl", [_lcb()], "field 'date_from': '2024-13-45' is not a date (YYYY-MM-DD)"),
    ("math500", "dir.jsonl", None, "dir.jsonl: is a directory, not a benchmark file"),
])
def test_local_benchmark_files_fail_in_one_line_naming_the_file(run_env, capsys, benchmark, name, content,
                                                                 needle):
    if content is None:
        (run_env / name).mkdir()
    else:
        _write(run_env / name, content)
    sets = ["--set", f"benchmark_path={name}"] + (["--set", "date_from=2024-13-45"] if "date_from" in needle else [])
    one_line_error(run_env, capsys, ["eval", "--model", "m", "--benchmark", benchmark, *NO_SERVER[2:], *sets,
                                     "--out", "ev"], needle.replace("b.jsonl", "q.jsonl"))


def test_a_plain_date_and_a_numeric_question_are_taken(run_env, capsys):
    _write(run_env / "l.jsonl", [_lcb()])
    _write(run_env / "q.jsonl", [{**GPQA, "Question": 42}])
    for benchmark, name in (("livecodebench", "l.jsonl"), ("gpqa-diamond", "q.jsonl")):
        # the file and the dates are accepted: the run gets as far as the (absent) server
        one_line_error(run_env, capsys, ["eval", "--model", "m", "--benchmark", benchmark, *NO_SERVER[2:],
                                         "--set", f"benchmark_path={name}", "--set", "date_from=2024-08-01",
                                         "--out", "ev"], "cannot reach the server")
    assert not (run_env / "ev").exists(), "a refused eval leaves no cache (nor its LOCK) behind"


def test_benchmark_path_with_a_file_benchmark_is_refused(run_env, capsys):
    write_jsonl(run_env / "mine.jsonl", [{"problem": "1+1?", "answer": "2"}])
    one_line_error(run_env, capsys, ["eval", "--model", "m", "--benchmark", "mine.jsonl", *NO_SERVER[2:],
                                     "--set", "benchmark_path=mine.jsonl"], "mine.jsonl is read as it is")


# --- eval --compare ----------------------------------------------------------------------------------------------
def _result(label="a", benchmark="math500", mean=0.5, problems=None) -> dict:
    problems = [{"prompt_id": f"p{i}", "metrics": {"pass@1": v}} for i, v in enumerate([1, 0, 1, 0])] \
        if problems is None else problems
    return {"label": label, "benchmark": benchmark, "model": label, "metrics": {"pass@1": {"mean": mean,
                                                                                        "ci95": 0.1}},
            "problems": problems}


@pytest.fixture
def results(run_env):
    for name, r in {"a.json": _result(), "b.json": _result("b"), "s.json": _result(mean="0.5"),
                    "nan.json": _result(mean=float("nan")), "empty.json": _result(problems=[]),
                    "bad.json": _result(problems=[{"prompt_id": "p", "metrics": {"pass@1": "1"}}]),
                    "aime.json": _result("c", "aime24")}.items():
        (run_env / name).write_text(json.dumps(r))
    (run_env / "ro").mkdir()
    return run_env


@pytest.mark.parametrize("args, needle", [
    (["a.json", "s.json"], "s.json: field 'metrics.pass@1.mean' should be a number between 0 and 1, got '0.5'"),
    (["a.json", "nan.json"], "nan.json: field 'metrics.pass@1.mean' should be a number between 0 and 1, got nan"),
    (["a.json", "empty.json"], "empty.json: no problems were scored"),
    (["a.json", "bad.json"], "bad.json: field 'problems[0]'"),
    (["a.json", "ro"], "ro: is a directory, not an eval result"),
    (["a.json", "b.json", "--png", "chart.txt"], "--png chart.txt: the chart is a PNG file"),
])
def test_compare_refuses_what_it_cannot_read(results, capsys, args, needle):
    one_line_error(results, capsys, ["eval", "--compare", *args], needle)


def test_compare_writes_the_chart_it_names_and_warns_across_benchmarks(results, capsys, monkeypatch):
    assert main(["eval", "--compare", "a.json", "aime.json", "--png", "ro"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (results / "ro" / "compare.png").exists() and "chart: ro/compare.png" in err
    assert "warning: these results are on different benchmarks (aime24, math500)" in err
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a non-root user on a read-only directory
    one_line_error(results, capsys, ["eval", "--compare", "a.json", "b.json", "--png", "ro/x.png"],
                   "--png ro/x.png: cannot write the chart there (ro is not a writable directory)")


# --- silent acceptances that cost money or mislead ---------------------------------------------------------------
def test_only_and_from_together_are_refused(run_env, capsys):
    quickstart = str(REPO / "pipelines" / "quickstart.yaml")
    one_line_error(run_env, capsys, ["run", quickstart, "--dry-run", "--only", "eval", "--from", "filter"],
                   "--only eval --from filter: --only runs one stage, --from reruns")


def test_a_dollar_budget_with_no_prices_is_refused(prompts, capsys):
    one_line_error(prompts, capsys, ["generate", "--prompts", "ok.jsonl", "--out", "run", *NO_SERVER,
                                     "--set", "budget.max_usd=5", "--set", "teacher.prices={}"],
                   "budget.max_usd with teacher.prices all 0 would never stop the run")


def test_teacher_priority_must_name_a_teacher_and_its_strategy(run_env, capsys, fake_server):
    _, url = fake_server()
    write_jsonl(run_env / "p.jsonl", [{"problem": "What is 1 + 1?", "answer": "2"}])
    assert main(["generate", "--prompts", "p.jsonl", "--teacher", "openai:fake-teacher", "--base-url", url,
                 "--out", "run", "--no-progress", "--n", "2"]) == 0
    capsys.readouterr()
    one_line_error(run_env, capsys, ["filter", "run", "--no-progress", "--set", "selection.teacher_priority=[a]"],
                   "teacher_priority is used only with strategy: teacher_priority (the strategy is shortest)")
    one_line_error(run_env, capsys, ["filter", "run", "--no-progress", "--set", "selection.strategy=teacher_priority",
                                     "--set", "selection.teacher_priority=[gpt-9]"],
                   "field 'selection.teacher_priority': 'gpt-9' is no teacher of run (its traces' teachers: "
                   "fake-teacher)")


def test_an_impossible_date_in_any_set_is_a_field_error(prompts, capsys):
    one_line_error(prompts, capsys, ["generate", "--prompts", "ok.jsonl", "--out", "run", *NO_SERVER,
                                     "--set", "prompts.seed=2024-13-45"],
                   "field 'prompts.seed': Input should be a valid integer")


@pytest.mark.parametrize("variant, needle", [
    ("{name: cache, set: {generate.sampling.n: 1}}", "variant name 'cache' is the shared sample cache's directory"),
    ("{name: moved, set: {run_dir: runs/quickstart}}", "variant 'moved' sets run_dir"),
    ("{name: other, set: {eval: [{name: student-after, model: student, benchmark: math500}]}}",
     "variant 'other' changes student-after.benchmark"),
])
def test_an_ablation_that_would_fail_after_training_is_refused_before(run_env, capsys, variant, needle):
    (run_env / "ab.yaml").write_text(f"name: ab\nbase: {REPO / 'pipelines' / 'quickstart.yaml'}\n"
                                     f"decide_by: student-after\nvariants: [{variant}]\n")
    one_line_error(run_env, capsys, ["ablate", "ab.yaml", "--dry-run", "--root", "runs"], needle)
