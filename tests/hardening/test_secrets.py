"""No secret reaches an artifact: a full run (generate, filter, card, push --dry-run, eval) with a secret in every
channel, then every file written and everything printed is searched for it."""

from pathlib import Path

from factory.cli import main
from tests.conftest import write_jsonl

SECRETS = {
    "url": "urlpw-S3CRET-0001",
    "header_file": "hdrfile-S3CRET-0002",
    "header_dict": "hdrdict-S3CRET-0003",
    "header_dotted": "hdrdot-S3CRET-0004",
    "query": "query-S3CRET-0005",
}


def _leaks(root: Path, texts: list[str]) -> list[str]:
    """Secrets in anything written under `root` (inputs excluded) or printed."""
    found = []
    for path in root.rglob("*"):
        if path.name in ("c.yaml", "p.jsonl"):
            continue
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {name}" for name, s in SECRETS.items() if s.encode() in data]
    for text in texts:
        found += [f"output: {name}" for name, s in SECRETS.items() if s in text]
    return found


def test_every_secret_channel_is_masked_in_every_artifact(tmp_path, fake_server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server, url = fake_server(basic_auth=f"alice:{SECRETS['url']}")
    secret_url = url.replace("http://", f"http://alice:{SECRETS['url']}@")
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "What is 40 + 2?", "answer": "42"},
                                       {"problem": "What is 1 + 1?", "answer": "2"}])
    (tmp_path / "c.yaml").write_text(f"teacher:\n  headers:\n    X-Api-Key: {SECRETS['header_file']}\n")
    common = ["--base-url", secret_url, "--no-progress", "-c", "c.yaml",
              "--set", f'teacher.headers={{"X-Second-Key": "{SECRETS["header_dict"]}"}}',
              "--set", f"teacher.headers.X-Auth-Token={SECRETS['header_dotted']}",
              "--set", f"teacher.extra_body={{\"metadata\": \"https://h/?token={SECRETS['query']}\"}}"]
    assert main(["generate", "--prompts", "p.jsonl", "--teacher", "openai:fake-teacher", "--n", "2",
                 "--out", "run", *common]) == 0
    assert server.served() == 4, "basic auth from the URL reached the server"
    assert main(["filter", "run", "--no-progress", "--workers", "1"]) == 0
    assert main(["card", "run"]) == 0
    assert main(["push", "run", "--repo", "acme/traces", "--dry-run"]) == 0
    assert main(["eval", "--model", "fake-teacher", "--engine", "openai", "--benchmark", "p.jsonl", "--n", "1",
                 "--out", "eval", *common]) == 0
    out = capsys.readouterr()
    assert (tmp_path / "run" / "card" / "README.md").exists() and list((tmp_path / "eval").glob("*.json"))
    resolved = (tmp_path / "run" / "config.resolved.yaml").read_text()
    assert "alice:***@127.0.0.1" in resolved and "X-Auth-Token=***" in resolved, "masked, not dropped"
    assert _leaks(tmp_path, [out.out, out.err]) == []


def test_error_messages_are_masked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "1+1?", "answer": "2"}])
    dead = f"http://alice:{SECRETS['url']}@127.0.0.1:9/v1?api_key={SECRETS['query']}"
    assert main(["generate", "--prompts", "p.jsonl", "--teacher", "openai:m", "--base-url", dead, "--out", "run",
                 "--no-progress", "--set", "teacher.max_retries=0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cannot reach" in err and _leaks(tmp_path, [err]) == []
    assert not (tmp_path / "run").exists()


def test_url_credentials_and_an_api_key_conflict(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-S3CRET-0006")
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "1+1?", "answer": "2"}])
    assert main(["generate", "--prompts", "p.jsonl", "--teacher", "openai:m", "--out", "run", "--no-progress",
                 "--base-url", f"http://alice:{SECRETS['url']}@127.0.0.1:9/v1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "has credentials and $OPENAI_API_KEY holds an API key" in err and "\n" not in err
    assert SECRETS["url"] not in err and "sk-env-S3CRET-0006" not in err


def test_the_api_key_from_the_environment_reaches_no_artifact(tmp_path, fake_server, capsys, monkeypatch):
    key = "sk-envkey-S3CRET-0007"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server, url = fake_server(api_key=key)
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "What is 40 + 2?", "answer": "42"}])
    assert main(["generate", "--prompts", "p.jsonl", "--teacher", "openai:fake-teacher", "--base-url", url,
                 "--n", "2", "--out", "run", "--no-progress"]) == 0
    assert server.served() == 2 and main(["filter", "run", "--no-progress", "--workers", "1"]) == 0
    assert main(["card", "run"]) == 0
    out = capsys.readouterr()
    leaks = [str(p) for p in (tmp_path / "run").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaks == [] and key not in out.out + out.err


def test_a_key_from_any_variable_and_any_header_value_are_masked(tmp_path, fake_server, capsys, monkeypatch):
    """`--set teacher.api_key_env=MY_LLM` with a server whose 400 echoes the key: the key landed in the error
    column and the rejected shards; a header named like nothing secret landed in config.resolved.yaml
    (issue 22, item 4)."""
    key, header = "mykey-S3CRET-0100", "plainhdr-S3CRET-0101"
    monkeypatch.setenv("MY_LLM", key)
    monkeypatch.chdir(tmp_path)
    server, url = fake_server(api_key=key, faults={"1 + 1": ["echo_auth"]})
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "What is 40 + 2?", "answer": "42"},
                                       {"problem": "What is 1 + 1?", "answer": "2"}])
    assert main(["generate", "--prompts", "p.jsonl", "--teacher", "openai:fake-teacher", "--base-url", url, "--n", "1",
                 "--out", "run", "--no-progress", "--set", "teacher.api_key_env=MY_LLM",
                 "--set", f'teacher.headers={{"X-Route": "{header}"}}']) == 0
    assert main(["filter", "run", "--no-progress", "--workers", "1"]) == 0
    out = capsys.readouterr()
    found = [f"{p.relative_to(tmp_path)}" for p in (tmp_path / "run").rglob("*") if p.is_file()
             and (key.encode() in p.read_bytes() or header.encode() in p.read_bytes())]
    assert found == [] and key not in out.err + out.out and header not in out.err + out.out
    from factory.storage.shards import read_table

    errors = [r["error"] for r in read_table(tmp_path / "run" / "traces").to_pylist() if r["error"]]
    assert len(errors) == 1 and "Bearer ***" in errors[0], errors  # the server did echo it
