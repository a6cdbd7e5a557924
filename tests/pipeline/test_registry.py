"""The stage registry and named stage instances: the same kind twice, each with its own config block, output,
fingerprint and state; checking what is up to date has no side effects."""

import json

import pytest
import yaml
from pydantic import BaseModel

from factory.cli import main
from factory.core.errors import FactoryError
from factory.core.results import StageResult
from factory.pipeline import dry_run, load_pipeline, plan_stages, resolve_model_ref
from factory.pipeline.registry import KINDS, STAGES
from tests.train.helpers import write_kept

TWO_SFT = {
    "name": "two-sft",
    "stages": [{"name": "sft1", "kind": "distill"}, {"name": "sft2", "kind": "distill"},
               {"name": "evals", "kind": "eval"}],
    "sft1": {"student": "tiny", "max_steps": 2, "save_steps": 1, "progress": False},
    "sft2": {"student": "tiny", "max_steps": 1, "save_steps": 1, "lr": 1e-4, "progress": False},
    "evals": [{"name": "after", "model": "student", "benchmark": "gym:chain_sum", "size": 2}],
}


def _write(tmp_path, doc):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**doc, "run_dir": str(tmp_path / "run")}))
    return path


def test_every_kind_is_a_stage_module_found_by_its_kind():
    assert KINDS == sorted(KINDS, key=lambda kind: STAGES[kind].ORDER)
    assert {"generate", "filter", "pairs", "card", "distill", "grpo", "eval", "compare"} <= set(KINDS)
    for kind, stage in STAGES.items():
        assert stage.KIND == kind and issubclass(stage.Config, BaseModel) and issubclass(stage.Result, StageResult)
        assert all(callable(getattr(stage, f)) for f in ("resolve", "run", "up_to_date", "estimate")), kind


def test_a_new_stage_is_one_module(tmp_path, monkeypatch):
    """Adding a kind is adding a module with its KIND: the registry, and so the loader, the runner and the dry run,
    find it there."""
    package = tmp_path / "more_stages"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "echo.py").write_text(
        "from factory.config.strict import Strict\nfrom factory.core.results import StageResult\n"
        "from factory.stages.estimates import Estimate\n"
        "from pathlib import Path\n"
        "KIND, ORDER = 'echo', 65\n"
        "CLI_ARGUMENT, CLI_OPTIONS = 'run_dir', ('words', 'loud')\n"
        "class Config(Strict):\n    run_dir: str = 'runs/x'\n    words: str = 'hello'\n"
        "    loud: bool = False\n"
        "class Result(StageResult):\n    SUMMARY = ('said',)\n    said: str\n"
        "def resolve(cfg):\n    return cfg\n"
        "def up_to_date(cfg):\n    return False\n"
        "def estimate(cfg, ctx):\n    return Estimate(what=f'says {cfg.words}')\n"
        "def run(cfg, ctx=None):\n    said = cfg.words.upper() if cfg.loud else cfg.words\n"
        "    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)\n"
        "    (Path(cfg.run_dir) / 'said.txt').write_text(said)\n    return Result(said=said)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import factory.pipeline.load as load
    from factory.pipeline import registry

    monkeypatch.setattr(registry, "PACKAGES", (*registry.PACKAGES, "more_stages"))
    found = registry._discover()
    assert list(found)[-2:] == ["echo", "compare"], "in its ORDER"
    monkeypatch.setattr(load, "STAGES", found)
    monkeypatch.setattr(load, "KINDS", list(found))
    p = load_pipeline(str(_write(tmp_path, {"stages": ["echo"], "echo": {"words": "hi"}})))
    assert p.configs["echo"].run_dir == str(tmp_path / "run") and p.configs["echo"].words == "hi"
    from factory.pipeline import plan, runner

    monkeypatch.setattr(plan, "STAGES", found)
    monkeypatch.setattr(runner, "STAGES", found)
    assert dry_run(p)["plan"][0][:2] == ["echo", "says hi"]
    assert runner.run(p)["echo"]["summary"] == {"said": "hi"}
    # its command too: `factory echo RUN_DIR --words W --loud`, options typed and helped by the config's fields
    import typer

    from factory.cli.stages import stage_command

    app = typer.Typer()
    app.command("echo")(stage_command(found["echo"]))
    app.command("other")(lambda: None)
    app(["echo", str(tmp_path / "cli"), "--words", "yes", "--loud"], standalone_mode=False)
    assert (tmp_path / "cli" / "said.txt").read_text() == "YES"


def test_named_instances_get_their_own_blocks_outputs_and_references(tmp_path):
    p = load_pipeline(str(_write(tmp_path, TWO_SFT)))
    run = tmp_path / "run"
    assert p.stages == ["sft1", "sft2", "evals.after"]
    assert [i.kind for i in p.instances] == ["distill", "distill", "eval"] and p.blocks == ["sft1", "sft2", "evals"]
    assert p.configs["sft1"].output_dir == str(run / "student" / "sft1") and p.configs["sft2"].lr == 1e-4
    assert resolve_model_ref("student", p, "evals.after") == str(run / "student" / "sft2" / "final")
    assert dict(p.evals)["after"].out == str(run / "eval" / "evals")
    rows = dry_run(p)["plan"]
    assert [r[0] for r in rows] == ["sft1", "sft2", "evals.after", "total"] and "lr 0.0001" in rows[1][1]


def test_bad_instances_are_named(tmp_path):
    doc = {**TWO_SFT, "stages": [{"name": "sft1", "kind": "distill"}, {"name": "sft1", "kind": "distill"}]}
    with pytest.raises(FactoryError, match="'sft1' is used twice"):
        load_pipeline(str(_write(tmp_path, doc)))
    with pytest.raises(FactoryError, match="unknown stage 'grpo0'"):
        load_pipeline(str(_write(tmp_path, {**TWO_SFT, "stages": [{"name": "x", "kind": "grpo0"}]})))
    with pytest.raises(FactoryError, match=r"sft2 \(distill\).*field 'lrr'"):
        load_pipeline(str(_write(tmp_path, {**TWO_SFT, "sft2": {"lrr": 1}})))


def test_checking_what_is_up_to_date_has_no_side_effects(tmp_path, monkeypatch):
    """No model is converted, built or downloaded to decide whether a stage is up to date."""
    import factory.storage.models
    import train.students

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was resolved while planning")

    monkeypatch.setattr(factory.storage.models, "resolve_model", forbidden)
    monkeypatch.setattr(train.students, "model_path", forbidden)
    doc = {**TWO_SFT, "evals": [{"name": "before", "model": "student-base", "benchmark": "gym:chain_sum"}]}
    p = load_pipeline(str(_write(tmp_path, doc)))
    from factory.pipeline.runner import fingerprints

    done = {name: {"fingerprint": fp, "done": True} for name, fp in fingerprints(p).items()}
    assert set(plan_stages(p, done, None, None).values()) == {"run"}
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_the_same_kind_twice_runs_skips_and_invalidates_in_order(tmp_path, capsys):
    write_kept(tmp_path / "run", n=6)
    doc = {k: v for k, v in TWO_SFT.items() if k != "evals"}
    doc["stages"] = doc["stages"][:2]
    path = _write(tmp_path, doc)
    assert main(["run", str(path)]) == 0
    run = tmp_path / "run"
    state = json.loads((run / "pipeline_state.json").read_text())
    assert state["sft1"]["summary"]["steps"] == 2 and state["sft2"]["summary"]["steps"] == 1
    assert (run / "student" / "sft1" / "final" / "config.json").exists()
    assert (run / "student" / "sft2" / "final" / "config.json").exists()
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert resolved["sft1"]["config"]["lr"] is None and resolved["sft2"]["config"]["lr"] == 1e-4
    assert state["sft1"]["fingerprint"] != state["sft2"]["fingerprint"]
    assert main(["run", str(path)]) == 0
    assert capsys.readouterr().err.count("up to date") == 2
    assert main(["run", str(path), "--set", "sft1.max_steps=3"]) == 0
    new = json.loads((run / "pipeline_state.json").read_text())
    assert new["sft1"]["summary"]["steps"] == 3 and new["sft2"]["fingerprint"] != state["sft2"]["fingerprint"]


def test_the_rl_recipes_plan_their_chain(capsys):
    from tests.conftest import REPO

    zero = load_pipeline(str(REPO / "pipelines" / "r1-zero-grpo.yaml"))
    plan = " | ".join(row[1] for row in dry_run(zero)["plan"])
    for needle in ["2000 steps × 32 prompts × G=16 = 1,024,000 rollouts", "8 GPUs, vLLM colocate",
                   "rewards accuracy ×1, format ×1", "template r1-zero", "context 131,072 positions"]:
        assert needle in plan, needle
    chain = load_pipeline(str(REPO / "pipelines" / "r1-multistage.yaml"))
    rows: dict[str, str] = {}
    for name, what, _ in dry_run(chain)["plan"]:
        rows.setdefault(name, what)  # a grpo has two lines: the run, then the recipe
    assert rows["rejection"].startswith("vllm:runs/r1-multistage/rl/rl-reasoning/final")
    assert rows["rl-all"].startswith("runs/r1-multistage/rejection/student/sft/final")
    assert chain.configs["sft"].student == "qwen-7b", "R1's second SFT starts again from the base model"
