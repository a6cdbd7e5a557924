"""Every command over a corpus of damaged inputs (issue 22, Low): one line, `error: ...`, exit 1, no traceback,
and every earlier output byte for byte as it was. The damage is what users and disks do: a shard truncated, emptied,
overwritten with random bytes or replaced by a directory; a manifest that is not JSON, not an object or has no file
list; a statistics file cut short; a lone surrogate in a prompt; a malformed URL; a pipeline that is not one."""

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest

from factory.cli import main
from tests.conftest import write_jsonl

TRACES = "traces/part-00000-of-00001.parquet"
KEPT = "filtered/kept/part-00000-of-00001.parquet"
SHARD = "shards/1-of-2/traces/part-00000-of-00001.parquet"


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A generated and filtered run, and a run with the two shards of `generate --shard I/2`."""
    from tests.fakes.openai_server import FakeOpenAI

    root = tmp_path_factory.mktemp("damaged")
    server = FakeOpenAI()
    url = server.start()
    prompts = write_jsonl(root / "p.jsonl", [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)])
    base = ["generate", "--prompts", str(prompts), "--teacher", "openai:fake-teacher", "--base-url", url, "--n", "2",
            "--no-progress"]
    try:
        assert main([*base, "--out", str(root / "run")]) == 0
        assert main(["filter", str(root / "run"), "--no-progress", "--workers", "1"]) == 0
        for i in (0, 1):
            assert main([*base, "--out", str(root / "run"), "--shard", f"{i}/2"]) == 0
    finally:
        server.stop()
    return root / "run"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(4096))


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def text(content: str):
    return lambda path: path.write_text(content)


def manifest_of(shard: str) -> str:
    return str(Path(shard).parent / "manifest.json")


SHARD_DAMAGE = [truncate, empty, random_bytes, directory]
MANIFEST_DAMAGE = [text("{{{"), text("[]"), text('{"files": null, "rows": 0}')]
CASES = [
    *[(["filter", "RUN", "--no-progress", "--workers", "1"], TRACES, d) for d in SHARD_DAMAGE],
    *[(["filter", "RUN", "--no-progress", "--workers", "1"], manifest_of(TRACES), d) for d in MANIFEST_DAMAGE],
    *[(["merge", "RUN"], SHARD, d) for d in (truncate, random_bytes)],
    *[(["merge", "RUN"], manifest_of(SHARD), d) for d in MANIFEST_DAMAGE[:2]],
    *[(["card", "RUN"], KEPT, d) for d in (truncate, directory)],
    (["card", "RUN"], manifest_of(KEPT), MANIFEST_DAMAGE[2]),
    (["card", "RUN"], "filtered/stats.json", text('{"funnel": {"in": 3')),
    (["push", "RUN", "--repo", "acme/x", "--dry-run"], KEPT, random_bytes),
    (["push", "RUN", "--repo", "acme/x", "--dry-run"], "filtered/stats.json", text("[]")),
    (["distill", "RUN", "--student", "tiny", "--set", "max_steps=1"], KEPT, truncate),
    (["distill", "RUN", "--student", "tiny", "--set", "max_steps=1"], manifest_of(KEPT), MANIFEST_DAMAGE[0]),
    (["view", "RUN", "--port", "1"], KEPT, empty),
    (["view", "RUN", "--port", "1"], manifest_of(KEPT), MANIFEST_DAMAGE[1]),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, target, damage", CASES,
                         ids=[f"{a[0]}-{t.split('/')[-1]}-{getattr(d, '__name__', 'text')}" for a, t, d in CASES])
def test_a_damaged_input_is_one_line_and_destroys_nothing(good_run, tmp_path, capsys, argv, target, damage):
    run = shutil.copytree(good_run, tmp_path / "run")
    damage(run / target)
    before = _snapshot(run)
    err = _one_line_error(capsys, main([a.replace("RUN", str(run)) for a in argv]))
    assert str(Path(target).parent) in err, f"the error names the damaged file: {err}"
    assert _snapshot(run) == before, "an earlier output changed"


def test_bad_values_are_one_line(tmp_path, capsys):
    (tmp_path / "surrogate.jsonl").write_text('{"problem": "a\\ud800b", "answer": "1"}\n')
    (tmp_path / "ok.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    generate = ["generate", "--teacher", "openai:m", "--out", str(tmp_path / "out"), "--no-progress"]
    err = _one_line_error(capsys, main([*generate, "--prompts", str(tmp_path / "surrogate.jsonl"),
                                        "--base-url", "http://127.0.0.1:9/v1"]))
    assert "surrogate.jsonl:1: field 'problem' holds a lone surrogate (\\ud800) at character 2" in err
    err = _one_line_error(capsys, main([*generate, "--prompts", str(tmp_path / "ok.jsonl"),
                                        "--base-url", "http://[::1"]))
    assert "teacher.base_url" in err and "not a URL" in err
    pipelines = {"run_dir5.yaml": ("run_dir: 5\nstages: [generate]\n", "run_dir: expected a string, got 5"),
                 "empty.yaml": ("", "no stages"),
                 "stage_dir.yaml": ("stages: [{name: g, kind: generate, run_dir: [1]}]\n", "run_dir: expected a string")}
    for name, (content, needle) in pipelines.items():
        (tmp_path / name).write_text(content)
        assert needle in _one_line_error(capsys, main(["run", str(tmp_path / name), "--dry-run"]))
    (tmp_path / "ok.yaml").write_text(f"run_dir: {tmp_path / 'r'}\nstages: [generate]\n")
    err = _one_line_error(capsys, main(["run", str(tmp_path / "ok.yaml"), "--from", "nosuchstage", "--dry-run"]))
    assert "--from nosuchstage: not a stage of" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "r").exists()


def test_a_full_disk_while_writing_shards_is_one_line_and_publishes_nothing(tmp_path, capsys, monkeypatch):
    """The Parquet write fails (ENOSPC, EFBIG under `ulimit -f`): no traceback, nothing published, the earlier
    shards untouched."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from factory.core.errors import FactoryError
    from factory.storage.shards import write_shards

    out, schema, rows = tmp_path / "traces", pa.schema([pa.field("x", pa.int64())]), [{"x": 1}]
    write_shards(out, rows, schema)
    before = _snapshot(tmp_path)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    with pytest.raises(FactoryError, match=r"traces: cannot write the shards \(No space left on device\): nothing "
                                           r"was published"):
        write_shards(out, rows * 3, schema)
    assert _snapshot(tmp_path) == before
    assert json.loads((out / "manifest.json").read_text())["rows"] == 1
