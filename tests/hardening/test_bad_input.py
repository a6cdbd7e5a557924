"""Every bad input is one line, `error: <file/field>: <what is wrong>`, exit 1, and nothing half-written."""

import pytest

from factory.cli import main


def _setup(root):
    (root / "latin1.jsonl").write_bytes('{"problem": "caf\xe9 au lait?"}\n'.encode("latin-1"))
    (root / "binary.jsonl").write_bytes(b'{"problem": "ok"}\n\x89PNG\r\n\x1a\n\x00\x00')
    (root / "dir.jsonl").mkdir()
    (root / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    (root / "ok.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    (root / "a_file").write_text("x")


@pytest.mark.parametrize("args,needle", [
    (["--prompts", "latin1.jsonl"], "error: latin1.jsonl:1:17: not UTF-8 text (byte 0xe9)"),
    (["--prompts", "binary.jsonl"], "error: binary.jsonl:2:1: not UTF-8 text (byte 0x89)"),
    (["--prompts", "dir.jsonl"], "error: dir.jsonl: is a directory, not a prompt file"),
    (["--prompts", "corrupt.parquet"], "error: corrupt.parquet: not a readable Parquet file"),
    (["--prompts", "ok.jsonl", "--set", "sampling.n={"], "error: --set sampling.n: invalid YAML value '{'"),
    (["--prompts", "ok.jsonl", "--n", "1000000"], "error: generate: field 'sampling.n': Input should be less than "
                                                  "or equal to 65536"),
    (["--prompts", "ok.jsonl", "--out", "a_file"], "error: a_file: --out is a file, not a run directory"),
    (["--prompts", "ok.jsonl", "--out", "a_file/run"], "error: a_file/run: cannot create the run directory: a_file "
                                                       "is a file"),
])
def test_one_line_errors(run_env, capsys, args, needle):
    _setup(run_env)
    before = sorted(p.name for p in run_env.iterdir())
    argv = ["generate", "--teacher", "openai:m", "--base-url", "http://127.0.0.1:9/v1", "--no-progress", *args]
    if "--out" not in args:
        argv += ["--out", "run"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(needle) and "\n" not in err, err
    assert sorted(p.name for p in run_env.iterdir()) == before, "nothing was created"


def test_unwritable_out_dir(run_env, capsys, monkeypatch):
    _setup(run_env)
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a non-root user on a read-only dir
    assert main(["generate", "--prompts", "ok.jsonl", "--teacher", "openai:m", "--base-url",
                 "http://127.0.0.1:9/v1", "--out", "ro/run", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ro/run: cannot create the run directory: . is not writable")
