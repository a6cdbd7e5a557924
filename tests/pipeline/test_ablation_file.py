"""Issue 25's ablation file: every variant is validated as the pipeline it will run, before anything runs."""

import pytest
import yaml

from factory.core.errors import FactoryError
from factory.pipeline.ablation import load_ablation
from tests.conftest import REPO

BASE = str(REPO / "pipelines" / "quickstart.yaml")


def _write(tmp_path, doc):
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _doc(**change):
    doc = {"name": "qs", "base": BASE, "decide_by": "student-after", "seeds": [42, 7],
           "variants": [{"name": "no-correctness", "set": {"filter.correctness.enabled": False}},
                        {"name": "one-sample", "set": {"generate.sampling.n": 1}}]}
    return {**doc, **change}


def test_each_variant_and_seed_is_a_pipeline_of_its_own(tmp_path):
    a = load_ablation(_write(tmp_path, _doc()), tmp_path / "ablate")
    assert sorted(a.runs) == sorted((v, s) for v in ("base", "no-correctness", "one-sample") for s in (42, 7))
    p = a.runs["no-correctness", 7]
    assert p.run_dir == tmp_path / "ablate" / "qs" / "no-correctness-seed7"
    assert p.configs["filter"].correctness.enabled is False and p.configs["distill"].seed == 7
    assert a.runs["one-sample", 42].configs["generate"].sampling.n == 1
    assert a.runs["base", 42].configs["filter"].correctness.enabled is True


@pytest.mark.parametrize("change, message", [
    ({"decide_by": "student"}, r"field 'decide_by': 'student' is not an eval .*student-before, student-after"),
    ({"variants": [{"name": "x", "set": {"filter.correctnes.enabled": False}}]},
     r"variant 'x': .*field 'correctnes': unknown field"),
    ({"variants": [{"name": "x", "set": {"generate.sampling.n": 0}}]}, r"variant 'x': .*field 'sampling.n'"),
    ({"variants": [{"name": "a"}, {"name": "a"}]}, r"variant name 'a' is used twice"),
    ({"variants": [{"name": "base"}]}, r"reserved for the base"),
    ({"variants": [{"name": "../up"}]}, r"field 'variants.0.name'"),
    ({"variants": []}, r"field 'variants'"),
    ({"seeds": [1, 1]}, r"field 'seeds': .*listed twice"),
    ({"colour": "red"}, r"field 'colour': unknown field"),
    # issue 36: what would fail after all the training, or compare different things, is refused at load
    ({"variants": [{"name": "cache", "set": {"generate.sampling.n": 1}}]}, r"'cache' is the shared sample cache"),
    ({"variants": [{"name": "eval-cache", "set": {"generate.sampling.n": 1}}]}, r"'eval-cache' is the shared eval"),
    ({"variants": [{"name": "results.json", "set": {"generate.sampling.n": 1}}]}, r"the ablation's results file"),
    ({"variants": [{"name": "x"}]}, r"variant 'x' has no `set`: it would be the base again"),
    ({"variants": [{"name": "x", "set": {"run_dir": "runs/quickstart"}}]}, r"variant 'x' sets run_dir: the "),
    ({"variants": [{"name": "x", "set": {"generate.sampling.n": 4}}]}, r"variant 'x': its set .* changes nothing"),
    ({"variants": [{"name": "x", "set": {"stages": ["generate", "filter", "card", "eval"]}}]},
     r"variant 'x' trains no student before student-after \(no distill stage\)"),
    ({"variants": [{"name": "x", "set": {"eval": [{"name": "student-after", "model": "student",
                                                    "benchmark": "gym:chain_sum", "size": 40}]}}]},
     r"variant 'x' changes student-after.gym_args"),
    ({"variants": [{"name": "x", "set": {"eval": [{"name": "student-after", "model": "student",
                                                    "benchmark": "math500"}]}}]},
     r"variant 'x' changes student-after.benchmark \('gym:chain_sum' -> 'math500'\)"),
    ({"variants": [{"name": "x", "set": {"eval": [{"name": "other", "model": "student",
                                                    "benchmark": "gym:chain_sum"}]}}]},
     r"variant 'x' has no eval 'student-after' \(decide_by\): its set removes it"),
])
def test_a_bad_ablation_names_the_field(tmp_path, change, message):
    with pytest.raises(FactoryError, match=message):
        load_ablation(_write(tmp_path, _doc(**change)), tmp_path / "ablate")


def test_every_run_shares_one_sample_cache(tmp_path):
    a = load_ablation(_write(tmp_path, _doc(seeds=[])), tmp_path / "ablate")
    caches = {p.configs["generate"].cache for p in a.runs.values()}
    assert caches == {str(tmp_path / "ablate" / "qs" / "cache")} and len(a.runs) == 3


@pytest.mark.parametrize("path", sorted((REPO / "pipelines" / "ablations").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_ablation_loads(path, tmp_path):
    a = load_ablation(str(path), tmp_path)
    assert len(a.runs) == (1 + len(a.config.variants)) * max(1, len(a.config.seeds))


def test_the_quickstart_ablations_dry_run_buys_only_each_new_students_eval(tmp_path):
    from factory.pipeline.ablate import dry_run

    out = dry_run(load_ablation(str(REPO / "pipelines" / "ablations" / "quickstart.yaml"), tmp_path))
    # the base: 96 prompts x 4 samples, and three evals of 40 problems x 4; a variant: its own student-after
    # only (its generation is a subset of the base's; the untrained student and the teacher are the base's)
    assert out["runs"]["base"]["new_samples"] == 96 * 4 + 3 * 40 * 4
    assert [out["runs"][v]["new_samples"] for v in ("no-correctness", "one-sample", "one-per-prompt")] == [160] * 3
    assert out["total"]["new_samples"] == 864 + 3 * 160


def test_deciding_by_a_model_every_run_shares_is_warned(tmp_path, capsys):
    load_ablation(_write(tmp_path, _doc(decide_by="teacher")), tmp_path / "ablate")
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: decide_by 'teacher' evaluates 'teacher', the same model (qwen2.5-coder-0.5b) in every run" in err
