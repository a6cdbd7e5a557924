"""`factory ablate` end to end against the local fake teacher: every variant a run of its own, one sample cache
(a filter-only variant buys no completion, a larger n only the new samples), one report."""

import json

import yaml

from factory.cli import main
from tests.conftest import write_jsonl

TRAIN = [f"Problem {i}: what is {i} + 1?" for i in range(3)]


def _files(tmp_path, url):
    write_jsonl(tmp_path / "p.jsonl", [{"problem": p, "answer": str(i + 1)} for i, p in enumerate(TRAIN)])
    teacher = {"engine": "openai", "model": "fake-teacher", "base_url": url}
    base = {"name": "t", "stages": ["generate", "filter", "card", "eval"],  # a variant's card: every sample cached
            "generate": {"prompts": {"source": str(tmp_path / "p.jsonl")}, "teacher": teacher,
                         "sampling": {"n": 2, "max_tokens": 64}, "progress": False},
            "filter": {"progress": False},
            "eval": [{"name": "teacher-eval", "model": "teacher", "benchmark": "gym:chain_sum", "size": 3,
                      "teacher": {"engine": "openai", "base_url": url}, "sampling": {"n": 2, "max_tokens": 64},
                      "progress": False}]}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    ablation = {"name": "abl", "base": str(tmp_path / "base.yaml"), "decide_by": "teacher-eval",
                "variants": [{"name": "no-correctness", "set": {"filter.correctness.enabled": False}},
                             {"name": "n3", "set": {"generate.sampling.n": 3}}]}
    (tmp_path / "ablation.yaml").write_text(yaml.safe_dump(ablation))
    return str(tmp_path / "ablation.yaml")


def _generation_samples(server) -> int:
    return sum(e.n for e in server.log if e.content.split("\n")[0] in TRAIN)


def test_variants_share_the_teachers_samples_and_get_a_report(tmp_path, fake_server):
    server, url = fake_server()
    path = _files(tmp_path, url)
    root = tmp_path / "ablate"
    assert main(["ablate", path, "--root", str(root), "--dry-run"]) == 0 and not server.log
    assert main(["ablate", path, "--root", str(root)]) == 0
    # base: 3 prompts x 2; no-correctness: nothing new; n3: sample 2 of each prompt only
    assert _generation_samples(server) == 6 + 0 + 3
    # the teacher eval is the same model on the same problems in every run: sampled once (3 problems x 2)
    assert sum(e.n for e in server.log) - _generation_samples(server) == 6
    run = root / "abl"
    assert (run / "no-correctness" / "filtered" / "stats.json").exists() and (run / "ablation.png").exists()
    res = json.loads((run / "results.json").read_text())
    by = {v["name"]: v for v in res["variants"]}
    assert by["n3"]["samples"] == 9 and by["no-correctness"]["samples"] == 6
    assert by["no-correctness"]["teacher"] == "openai:fake-teacher" and res["base"]["seconds"] > 0
    card = (run / "no-correctness" / "card" / "README.md").read_text()
    assert "(6 samples from the cache)" in card
    assert by["no-correctness"]["kept"] >= res["base"]["kept"]
    assert all(v["n"] == 3 and v["p_holm"] is not None for v in res["variants"])
    report = (run / "report.md").read_text()
    assert "no significant difference from the base" in report and "| base |" in report
    before = len(server.log)
    assert main(["ablate", path, "--root", str(root)]) == 0 and len(server.log) == before, "a rerun buys nothing"
    from factory.view import create_app

    client = create_app(run).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "Ablation abl" in page and "no-correctness: no significant difference" in page
    assert client.get("/ablation.png").status_code == 200


def test_the_dry_run_counts_shared_samples_once(tmp_path, fake_server):
    from factory.pipeline.ablate import dry_run
    from factory.pipeline.ablation import load_ablation

    server, url = fake_server()
    out = dry_run(load_ablation(_files(tmp_path, url), tmp_path / "ablate"))
    runs = out["runs"]
    # generation: the base buys 3 x 2, no-correctness nothing, n3 the third sample of each prompt; the teacher
    # eval (3 problems x 2) is the same model on the same problems in every run: bought by the base only
    assert [runs[r]["new_samples"] for r in ("base", "no-correctness", "n3")] == [6 + 6, 0, 3]
    assert out["total"]["new_samples"] == 15 and not server.log
