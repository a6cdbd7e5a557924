"""`factory card` and `factory push` on a real (small) filtered run; the push against a local Hub stand-in that the
real huggingface_hub client talks to through HF_ENDPOINT."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from factory.cli import main
from tests.conftest import REPO, write_jsonl
from tests.fakes.hub_server import FakeHub

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path, fake_server):
    _, url = fake_server()  # answers \boxed{42}: some prompts pass, some fail correctness
    problems = [("What is 40 + 2?", "42"), ("What is 6 * 7?", "42"), ("What is 3 + 4?", "7"), ("What is 1+1?", "2")]
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, "answer": a} for p, a in problems])
    out = tmp_path / "run"
    assert main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                 "--base-url", url, "--n", "2", "--out", str(out), "--no-progress"]) == 0
    assert main(["filter", str(out), "--no-progress", "--workers", "1"]) == 0
    return out


def _front_matter(readme):
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


def test_card_front_matter_numbers_and_plots(run_dir):
    assert main(["card", str(run_dir), "--repo-id", "acme/traces"]) == 0
    readme = run_dir / "card" / "README.md"
    meta, text = _front_matter(readme)
    stats = json.loads((run_dir / "filtered" / "stats.json").read_text())
    kept, rejected = stats["funnel"]["kept"], stats["funnel"]["in"] - stats["funnel"]["kept"]
    assert (kept, rejected) == (4, 4)
    assert meta["license"] == "other" and meta["size_categories"] == ["n<1K"] and "text-generation" in \
        meta["task_categories"] and meta["language"] == ["en"]
    assert [c["config_name"] for c in meta["configs"]] == ["default", "rejected"]
    assert meta["configs"][0]["data_files"][0]["path"] == "data/kept/*.parquet"
    info = {i["config_name"]: i for i in meta["dataset_info"]}
    assert info["default"]["splits"][0]["num_examples"] == kept and info["rejected"]["splits"][0]["num_examples"] \
        == rejected
    assert {"name": "reasoning", "dtype": "string"} in info["default"]["features"]
    assert f"**{kept}** of {stats['funnel']['in']} traces" in text
    assert f"| correctness | {stats['funnel']['rejected_by']['correctness']} |" in text
    assert "| language | 0 | 0 | 4 | 4 |" in text, "language did not judge the 4 traces correctness rejected"
    assert "`fake-teacher`" in text and "| temperature | 0.6 |" in text and "Rejected by correctness" in text
    assert "factory generate --prompts" in text and "factory filter" in text  # the commands that made it
    assert 'load_dataset("acme/traces", split="train")' in text
    for png in ("tokens", "funnel", "pass_rate"):
        data = (run_dir / "card" / "assets" / f"{png}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 2000


def test_card_is_deterministic(run_dir, tmp_path):
    assert main(["card", str(run_dir), "--set", f"out={tmp_path / 'a'}"]) == 0
    assert main(["card", str(run_dir), "--set", f"out={tmp_path / 'b'}"]) == 0
    for rel in ("README.md", "assets/tokens.png", "assets/funnel.png", "assets/pass_rate.png"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_dry_run_folder_loads_with_datasets(run_dir, capsys):
    import datasets

    assert main(["push", str(run_dir), "--repo", "acme/traces", "--dry-run", "--include-rejected"]) == 0
    assert "nothing was uploaded" in capsys.readouterr().err
    staging = run_dir / "push"
    kept = datasets.load_dataset(str(staging), split="train")
    rejected = datasets.load_dataset(str(staging), "rejected", split="train")
    assert (kept.num_rows, rejected.num_rows) == (4, 4)
    assert all(kept["kept"]) and not any(rejected["kept"])
    assert kept.features["completion_tokens"].dtype == "int32" and kept.features["pass_rate"].dtype == "float64"
    direct = datasets.load_dataset("parquet", data_files=str(staging / "data" / "kept" / "*.parquet"), split="train")
    assert sorted(direct["prompt_id"]) == sorted(kept["prompt_id"])


def test_large_shards_are_split_under_the_limit(run_dir, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from factory.publish.hub import stage_shards
    from factory.storage.shards import read_manifest

    big = tmp_path / "big"
    shutil.copytree(run_dir / "filtered" / "kept", big)
    (shard,) = [big / f["file"] for f in read_manifest(big)["files"]]
    pq.write_table(pq.read_table(shard), shard, row_group_size=1)  # one row group per row
    out = stage_shards(big, tmp_path / "out", max_bytes=1)
    assert [p.name for p in out] == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert sum(pq.read_metadata(p).num_rows for p in out) == 4


def _push(run_dir, hub_url, token, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(run_dir.parent / "hf-home"), PYTHONPATH=str(REPO))
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "factory.cli", "push", str(run_dir), *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def hub():
    h = FakeHub()
    h.start()
    yield h
    h.stop()


def test_push_creates_the_repo_commits_and_resumes(run_dir, hub):
    res = _push(run_dir, hub.url, hub.token, "--repo", "acme/traces", "--include-rejected", "--private")
    assert res.returncode == 0, res.stderr[-3000:]
    files = hub.repos["acme/traces"]
    assert set(files) == {"README.md", "assets/tokens.png", "assets/funnel.png", "assets/pass_rate.png",
                          "data/kept/train-00000-of-00001.parquet", "data/rejected/train-00000-of-00001.parquet"}
    assert files["data/kept/train-00000-of-00001.parquet"] == (run_dir / "push" / "data" / "kept" /
                                                               "train-00000-of-00001.parquet").read_bytes()
    methods = [c for c in hub.calls if c[1].startswith("/api/")]
    assert ("POST", "/api/repos/create") in methods
    commits = [c for c in methods if "/commit/" in c[1]]
    assert len(commits) == 2, "data first, then the card that points at it"
    assert hub.validated and hub.validated[0]["configs"][1]["config_name"] == "rejected"
    assert hub.token not in res.stdout + res.stderr
    assert not any(hub.token.encode() in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    hub.calls.clear()
    again = _push(run_dir, hub.url, hub.token, "--repo", "acme/traces", "--include-rejected")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 files uploaded, 6 already there, 0 stale files removed, 0 commits" in " ".join(again.stderr.split())
    assert not [c for c in hub.calls if "/commit/" in c[1]]


def test_a_push_mirrors_the_run_stale_shards_are_deleted(run_dir, hub, tmp_path):
    """Issue 22, item 3: after a re-filter into other shard names, the Hub holds the new shards only (one commit
    adds the card and deletes the old ones); --dry-run lists what would go; files outside data/ and assets/ stay."""
    import datasets

    assert _push(run_dir, hub.url, hub.token, "--repo", "acme/traces").returncode == 0
    hub.repos["acme/traces"]["notes.md"] = b"the user's own file"
    assert main(["filter", str(run_dir), "--no-progress", "--workers", "1", "--set", "shard_rows=1"]) == 0
    dry = _push(run_dir, hub.url, hub.token, "--repo", "acme/traces", "--dry-run")
    assert dry.returncode == 0 and "would delete data/kept/train-00000-of-00001.parquet" in dry.stderr
    assert "data/kept/train-00000-of-00004.parquet" not in hub.repos["acme/traces"], "a dry run sends nothing"
    res = _push(run_dir, hub.url, hub.token, "--repo", "acme/traces")
    assert res.returncode == 0, res.stderr[-3000:]
    files = hub.repos["acme/traces"]
    assert sorted(p for p in files if p.startswith("data/")) == [
        f"data/kept/train-{i:05d}-of-00004.parquet" for i in range(4)] and "notes.md" in files
    assert "1 stale files removed" in " ".join(res.stderr.split())
    local = tmp_path / "hub-copy"
    for path, data in files.items():
        (local / path).parent.mkdir(parents=True, exist_ok=True)
        (local / path).write_bytes(data)
    assert datasets.load_dataset(str(local), split="train").num_rows == 4


def test_push_refuses_before_uploading(run_dir, hub, tmp_path):
    res = _push(run_dir, hub.url, hub.token, "--repo", "bob/traces")
    assert res.returncode == 1 and "'bob' is neither your account (alice) nor one of your organisations (acme)" in \
        res.stderr
    res = _push(run_dir, hub.url, None, "--repo", "acme/traces")
    assert res.returncode == 1 and "no Hugging Face token" in res.stderr
    res = _push(run_dir, hub.url, "hf_wrong", "--repo", "acme/traces")
    assert res.returncode == 1 and "refused the token (HTTP 401)" in res.stderr
    res = _push(run_dir, hub.url, hub.token, "--repo", "not a repo")
    assert res.returncode == 1 and "expected ORG/NAME" in res.stderr
    res = _push(run_dir, hub.url, hub.token, "--repo", "acme/bad..name")
    assert res.returncode == 1 and "not a valid repo id" in res.stderr
    (tmp_path / "empty").mkdir()
    res = _push(tmp_path / "empty", hub.url, hub.token, "--repo", "acme/traces")
    assert res.returncode == 1 and "no filtered output yet" in res.stderr
    assert not [c for c in hub.calls if c[1] == "/api/repos/create" or "/commit/" in c[1]]
    assert not hub.repos


def test_a_push_never_removes_a_folder_it_did_not_stage(run_dir, tmp_path, capsys):
    """`--set staging=RUN_DIR` once deleted a whole run; a staging folder is factory's own (marked) or refused."""
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for staging, needle in [(run_dir, "would hold the run directory"), (tmp_path, "would hold the run directory"),
                            (run_dir / "filtered" / "x", "inside the run's own outputs (filtered/)"),
                            (mine, "was not made by factory push")]:
        assert main(["push", str(run_dir), "--repo", "acme/traces", "--dry-run", "--set", f"staging={staging}"]) == 1
        assert needle in capsys.readouterr().err
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before and (mine / "notes.txt").exists()
    for _ in range(2):  # its own staging, marked, is replaced on every push
        assert main(["push", str(run_dir), "--repo", "acme/traces", "--dry-run"]) == 0
    assert (run_dir / "push" / ".factory-push-staging").exists() and (run_dir / "push" / "README.md").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["push", str(run_dir), "--repo", "acme/traces", "--dry-run", "--set", f"staging={empty}"]) == 0


def test_a_pipeline_of_named_instances_gets_its_card(tmp_path, fake_server):
    """`stages: [{name: gen, kind: generate}, {name: keep, kind: filter}, {name: docs, kind: card}]` failed at the
    card: it looked for the sections under the kinds' names (issue 22, item 11)."""
    _, url = fake_server()
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "What is 40 + 2?", "answer": "42"},
                                       {"problem": "What is 3 + 4?", "answer": "7"}])
    run = tmp_path / "run"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "name": "named", "run_dir": str(run),
        "stages": [{"name": "gen", "kind": "generate"}, {"name": "keep", "kind": "filter"},
                   {"name": "docs", "kind": "card"}],
        "gen": {"prompts": {"source": str(tmp_path / "p.jsonl")}, "progress": False, "sampling": {"n": 2},
                "teacher": {"engine": "openai", "model": "fake-teacher", "base_url": url}},
        "keep": {"workers": 1, "progress": False}, "docs": {}}))
    assert main(["run", str(tmp_path / "p.yaml")]) == 0
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert resolved["gen"]["kind"] == "generate" and resolved["keep"]["kind"] == "filter"
    text = (run / "card" / "README.md").read_text()
    assert "`fake-teacher`" in text and "**2** of 4 traces" in text


def test_push_with_no_hub_to_answer(run_dir):
    """An offline cluster node with a token: the dry run stages everything and says it could not list the remote
    files; a real push is one line naming the endpoint (issue 36)."""
    dry = _push(run_dir, "http://127.0.0.1:9", "hf_offline_token_123", "--repo", "acme/traces", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    err = " ".join(dry.stderr.split())
    assert "could not list acme/traces at http://127.0.0.1:9" in err and "Traceback" not in err
    assert (run_dir / "push" / "README.md").exists()
    real = _push(run_dir, "http://127.0.0.1:9", "hf_offline_token_123", "--repo", "acme/traces")
    assert real.returncode == 1 and "Traceback" not in real.stderr
    assert real.stderr.strip().splitlines()[-1].startswith("error: http://127.0.0.1:9: cannot reach the Hub")
    assert "hf_offline_token_123" not in dry.stderr + real.stderr


def test_the_pairs_are_a_section_of_the_card_and_a_config_of_the_dataset(tmp_path, fake_server, hub):
    import datasets

    right = "<think>\nForty plus two is forty-two.\n</think>\n\nThe answer is \\boxed{42}."
    wrong = "<think>\nForty plus two, carrying a one, is forty-three, I think.\n</think>\n\nThe answer is \\boxed{43}."
    _, url = fake_server(replies={"40 + 2": [right, wrong]}, reject_n=True)  # one request per sample
    write_jsonl(tmp_path / "p.jsonl", [{"problem": "What is 40 + 2?", "answer": "42"},
                                       {"problem": "What is 3 + 4?", "answer": "7"}])
    run = tmp_path / "run"
    assert main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--teacher", "openai:fake-teacher",
                 "--base-url", url, "--n", "2", "--out", str(run), "--no-progress"]) == 0
    assert main(["filter", str(run), "--no-progress", "--workers", "1"]) == 0
    assert main(["pairs", str(run), "--kind", "correct_vs_wrong"]) == 0
    assert main(["push", str(run), "--repo", "acme/traces", "--dry-run"]) == 0
    meta, text = _front_matter(run / "push" / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["default", "pairs"]
    features = {f["name"]: f for f in meta["dataset_info"][1]["features"]}
    assert features["chosen"]["list"] == [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]
    assert "## Preference pairs" in text and "| correct_vs_wrong | 1 | no verified trace: 1 |" in text
    assert 'load_dataset("acme/traces", "pairs", split="train")' in text
    assert (run / "push" / "assets" / "pair_ratio.png").read_bytes().startswith(PNG)
    pairs = datasets.load_dataset(str(run / "push"), "pairs", split="train")
    assert pairs.num_rows == 1 and pairs[0]["chosen"][0]["content"].endswith("\\boxed{42}.")
    assert pairs[0]["rejected"][0]["content"].endswith("\\boxed{43}.")
    res = _push(run, hub.url, hub.token, "--repo", "acme/traces")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "data/pairs/train-00000-of-00001.parquet" in hub.repos["acme/traces"]
    assert [c["config_name"] for c in hub.validated[0]["configs"]] == ["default", "pairs"]
    assert main(["push", str(run), "--repo", "acme/traces", "--dry-run", "--no-include-pairs"]) == 0
    assert "pairs" not in [c["config_name"] for c in _front_matter(run / "push" / "README.md")[0]["configs"]]
    assert not (run / "push" / "data" / "pairs").exists()
