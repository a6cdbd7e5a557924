"""The surfaces the fourth phase added (adaptive sampling, budgets, ablations, the priced dry run, local benchmark
files, `eval --compare`, push's dry run) under a hostile user (issue 36): every refusal is one line, `error: ...`,
exit 1, no traceback, naming the file, line or field, and every file that was there is byte for byte as it was."""

import hashlib
from pathlib import Path

import pytest

from factory.cli import main
from tests.conftest import write_jsonl

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
