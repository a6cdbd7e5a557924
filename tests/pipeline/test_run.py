"""`factory run`: a miniature pipeline end to end (bundled SmolLM2 as teacher on transformers, tiny student),
skipping, resuming after a kill, invalidation by a config change; every shipped pipeline validates."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factory.cli import main
from factory.core.errors import FactoryError
from factory.pipeline import load_pipeline
from tests.conftest import REPO

MINI = {
    "name": "mini",
    "generate": {"prompts": {"source": "gym:chain_sum", "size": 4, "seed": 42},
                 "teacher": {"engine": "hf", "model": "smollm2-135m"}, "sampling": {"n": 2, "max_tokens": 48}},
    "filter": {"correctness": {"enabled": False}, "length": {"reject_truncated": False},
               "format": {"require_closed": False}},
    "card": {},
    "distill": {"student": "tiny", "max_steps": 3, "save_steps": 1},
    "eval": [{"name": "before", "model": "student-base", "benchmark": "gym:chain_sum", "size": 2,
              "teacher": {"engine": "hf"}, "sampling": {"n": 2, "max_tokens": 16}},
             {"name": "after", "model": "student", "benchmark": "gym:chain_sum", "size": 2,
              "teacher": {"engine": "hf"}, "sampling": {"n": 2, "max_tokens": 16}}],
}


def _write(tmp_path, doc=MINI):
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump({**doc, "run_dir": str(tmp_path / "run")}))
    return path


def _state(tmp_path):
    return json.loads((tmp_path / "run" / "pipeline_state.json").read_text())


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_pipeline_validates_and_plans(path, capsys):
    p = load_pipeline(str(path))
    assert p.stages and all(s in p.configs or i.kind == "eval" for s, i in zip(p.stages, p.instances))
    assert main(["run", str(path), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert all(s[:10] in err for s in p.stages), "every stage has a line in the plan"


def test_the_full_recipe_plans_tokens_and_cost():
    from factory.pipeline import dry_run

    plan = dry_run(load_pipeline(str(REPO / "pipelines" / "r1-distill-qwen7b.yaml")))["generate"]
    assert plan["samples"] == 100_000 * 4
    # 400k samples x (150 prompt tokens at $0.55/M + 5000 completion tokens at $2.19/M) = $33 + $4380
    assert plan["cost_usd"] == pytest.approx(4413.0)


def test_the_cluster_recipe_plans_replicas_on_ray(capsys):
    from factory.pipeline import dry_run

    path = REPO / "pipelines" / "r1-generate-ray-2x8.yaml"
    p = load_pipeline(str(path))
    g = p.configs["generate"]
    assert (g.executor.kind, g.executor.actors, g.teacher.tensor_parallel_size) == ("ray", 2, 8)
    out = dry_run(p)
    assert out["generate"]["samples"] == 100_000 * 4
    assert "on Ray (auto): 2 replicas" in " ".join(row[1] for row in out["plan"])


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_decontaminate_against_what_they_evaluate_on(path):
    p = load_pipeline(str(path))
    hub = {e.benchmark for _, e in p.evals if not e.benchmark.startswith("gym:")}  # gym evals use held-out seeds
    if "filter" in p.configs:
        assert hub <= set(p.configs["filter"].decontam.benchmarks), f"{path.name}: evaluated but not decontaminated"


def test_the_r1_recipe_is_the_papers():
    path = REPO / "pipelines" / "r1-distill-qwen7b.yaml"
    p = load_pipeline(str(path))
    gen, filt, distill = p.configs["generate"], p.configs["filter"], p.configs["distill"]
    assert (gen.sampling.temperature, gen.sampling.top_p, gen.sampling.max_tokens) == (0.6, 0.95, 32768)
    assert gen.template.system is None and filt.length.max_tokens is None, "length limit = generation limit"
    assert distill.epochs == 2 and [m.reasoning for m in distill.mix] == [True, False]
    aime = dict(p.evals)["student-aime24"]
    assert aime.sampling.n == 64 and 64 in aime.ks
    from factory.pipeline import dry_run

    plan = " | ".join(row[1] for row in dry_run(p)["plan"])
    for needle in ["decontaminated against math500, aime24", "context extended to 131,072 positions",
                   "rope_theta 300,000", "mixture: runs/r1-distill-qwen7b (reasoning)", "(non-reasoning, 60,000)",
                   "n=64 (pass@1 over 64; pass@64, maj@64), T=0.6, top_p=0.95, max_tokens=32768"]:
        assert needle in plan, needle


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_mini_pipeline_end_to_end_then_skip_then_invalidate(tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["run", str(path)]) == 0
    run = tmp_path / "run"
    state = _state(tmp_path)
    evals = ["eval.before", "eval.after", "eval.compare"]  # one instance per eval, then their comparison
    assert all(state[s]["done"] for s in ("generate", "filter", "card", "distill", *evals))
    assert (run / "card" / "README.md").exists() and (run / "student" / "tiny" / "final" / "config.json").exists()
    before = json.loads((run / "eval" / "before-gym-chain_sum.json").read_text())
    after = json.loads((run / "eval" / "after-gym-chain_sum.json").read_text())
    assert before["model"].endswith("tiny") and after["model"].endswith("student/tiny/final")
    assert before["settings"]["exclude_runs"] == [str(run)]
    err = capsys.readouterr().err
    assert "pass@1 (95% CI)" in err and "student" not in state["generate"]["summary"]
    assert (run / "eval" / "compare.png").exists() and (run / "eval" / "summary.md").exists()
    # Everything up to date: nothing runs again.
    assert main(["run", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") >= 5 and _state(tmp_path)["distill"] == state["distill"]
    # A filter parameter and the learning rate change: filter and everything after rerun, generate does not.
    changes = ["--set", "filter.repetition.max_repeats=50", "--set", "distill.lr=3e-3"]
    assert main(["run", str(path), *changes]) == 0
    new = _state(tmp_path)
    assert new["generate"] == state["generate"]
    assert all(new[s]["fingerprint"] != state[s]["fingerprint"] for s in ("filter", "card", "distill", *evals))
    assert "generate: up to date" in capsys.readouterr().err
    # The retrained student, at the same path, is sampled afresh; the unchanged base model comes from the cache.
    after = json.loads((run / "eval" / "after-gym-chain_sum.json").read_text())["generation"]
    before = json.loads((run / "eval" / "before-gym-chain_sum.json").read_text())["generation"]
    assert (after["requested"], before["cached"]) == (4, 4)
    # --from forces a rerun of an up-to-date stage; --only touches that stage alone.
    assert main(["run", str(path), *changes, "--from", "card", "--only", "card"]) == 0
    err = capsys.readouterr().err
    assert "card (run)" in err and "filter" not in err.split("card (run)")[0]
    # a block's name reaches every instance of it: --only eval reruns the evals and their comparison
    assert main(["run", str(path), *changes, "--from", "eval", "--only", "eval"]) == 0
    err = capsys.readouterr().err
    assert all(f"{e} (run)" in err for e in evals) and "card (run)" not in err


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_killed_mid_generation_resumes_without_duplicates(tmp_path):
    doc = {k: v for k, v in MINI.items() if k in ("name", "generate", "filter")}
    doc["generate"] = {**doc["generate"], "sampling": {"n": 3, "max_tokens": 48}, "teacher":
                       {"engine": "hf", "model": "smollm2-135m", "batch_size": 1}}
    path = _write(tmp_path, doc)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "factory.cli", "run", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = tmp_path / "run" / "cache"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and sum(f.stat().st_size for f in cache.glob("seg-*")) < 200:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _state(tmp_path)["generate"]["done"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    state = _state(tmp_path)
    g = state["generate"]["summary"]
    assert state["generate"]["done"] and g["samples"] == 12 and 0 < g["cached"] < 12 and g["requested"] == 12 - \
        g["cached"]
    from factory.storage.shards import read_table

    rows = read_table(tmp_path / "run" / "traces").to_pylist()
    assert sorted((r["prompt_id"], r["sample_index"]) for r in rows) == sorted(
        {(r["prompt_id"], r["sample_index"]) for r in rows}) and len(rows) == 12


def test_bad_pipelines_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"generate": {"sampling": {"n": 0}}}))
    with pytest.raises(FactoryError, match=r"bad.yaml generate.*sampling.n"):
        load_pipeline(str(bad))
    bad.write_text(yaml.safe_dump({"stages": ["generate", "train"], "generate": {}}))
    with pytest.raises(FactoryError, match="unknown stage 'train'"):
        load_pipeline(str(bad))
    bad.write_text(yaml.safe_dump({"generate": {}, "evl": []}))
    with pytest.raises(FactoryError, match="unknown top-level key 'evl'"):
        load_pipeline(str(bad))
    assert main(["run", str(Path(_write(tmp_path))), "--from", "push"]) == 1


def test_the_r1_recipe_prices_every_stage_and_the_gpu_changes_the_hours(capsys):
    from factory.pipeline import dry_run

    path = str(REPO / "pipelines" / "r1-distill-qwen7b.yaml")
    h100 = dry_run(load_pipeline(path))
    costs = h100["costs"]
    assert costs["generate"]["cost_usd"] == pytest.approx(4413.0)
    # distill: 400k generated x 60% kept, at most 2 per prompt of 100k (selection) + 60k smoltalk = 260k samples
    # of 150 + 5,000 tokens, 2 epochs, 7.62B
    d = costs["distill"]
    assert d["samples"] == 260_000 and d["train_tokens"] == 260_000 * 5150 * 2
    assert d["gpu_hours"] == pytest.approx(6 * 7.62e9 * d["train_tokens"] / (0.35 * 989e12) / 3600, abs=0.1)
    # evals on vLLM: MATH-500 x 4 twice and AIME 2024 x 64, 5,000 tokens each, at 2,500 tokens/s per GPU
    evals = [c for name, c in costs.items() if name.startswith("eval.")]  # one instance per eval
    samples, hours = sum(e["samples"] for e in evals), sum(e["gpu_hours"] for e in evals)
    assert samples == 500 * 4 * 2 + 30 * 64
    assert hours == pytest.approx(samples * 5000 / 2500 / 3600, abs=0.2)
    assert h100["total"] == {"cost_usd": pytest.approx(4413.0), "gpu_hours": pytest.approx(d["gpu_hours"] + hours, abs=0.1)}
    shown = " ".join(" ".join(row) for row in h100["plan"])
    for needle in ["$4,413.00", "GPU-h", "H100 at 989 TFLOP/s", "MFU 35%", "2,500 tokens/s per GPU", "total"]:
        assert needle in shown, needle
    assert "plan:" in capsys.readouterr().err
    a100 = dry_run(load_pipeline(path, ["plan.gpu=A100", "plan.gpu_hour_usd=2"]))
    assert a100["costs"]["distill"]["gpu_hours"] == pytest.approx(d["gpu_hours"] * 989 / 312, rel=0.01)
    assert a100["costs"]["generate"]["cost_usd"] == pytest.approx(4413.0), "an API teacher's cost is the GPU's"
    assert a100["total"]["all_in_usd"] == pytest.approx(4413.0 + 2 * a100["total"]["gpu_hours"], abs=0.5)


def test_grpo_and_local_generation_are_priced_in_gpu_hours():
    from factory.pipeline import dry_run

    zero = dry_run(load_pipeline(str(REPO / "pipelines" / "r1-zero-grpo.yaml")))["costs"]["grpo"]
    assert zero["rollouts"] == 1_024_000 and zero["train_tokens"] == 1_024_000 * (200 + 4000)
    assert zero["gpu_hours"] > zero["rollout_gpu_hours"] > 0
    quick = dry_run(load_pipeline(str(REPO / "pipelines" / "quickstart.yaml")))["costs"]["generate"]
    assert quick["gpu_hours"] == pytest.approx(96 * 4 * 96 / 2500 / 3600, abs=0.05) and "cost_usd" not in quick


def test_the_rl_demos_control_is_the_same_run_with_shuffled_rewards_from_the_quickstarts_student():
    from train.students import final_dir

    demo = load_pipeline(str(REPO / "pipelines" / "quickstart-rl.yaml"))
    p = load_pipeline(str(REPO / "pipelines" / "quickstart-rl-control.yaml"))
    arm, control = p.configs["grpo"], p.configs["control"]
    assert arm == demo.configs["grpo"] and p.run_dir == demo.run_dir, "make demo-rl's arm is up to date here"
    own = {"name", "rewards", "output_dir"}  # a named instance writes to RUN_DIR/rl/NAME
    assert arm.model_dump(exclude=own) == control.model_dump(exclude=own)
    assert arm.rewards.model_dump(exclude={"control"}) == control.rewards.model_dump(exclude={"control"})
    assert (arm.rewards.control, control.rewards.control) == ("none", "shuffled")
    quickstart = load_pipeline(str(REPO / "pipelines" / "quickstart.yaml"))
    assert arm.model == str(final_dir(quickstart.configs["distill"])), "RL starts from make demo's student"
    evals = dict(p.evals)
    assert evals["after"].vs == "control" and evals["before"].model == arm.model
    assert dict(demo.evals)["after"] == evals["after"].model_copy(update={"vs": None})
    same = {"name", "model", "vs", "label"}
    assert evals["before"].model_dump(exclude=same) == evals["after"].model_dump(exclude=same) == \
        evals["control"].model_dump(exclude=same), "the three models answer the same problems, sampled alike"
    assert "runs/quickstart" in evals["after"].exclude_runs, "the SFT's prompts are not held out"
    assert str(p.run_dir) in evals["after"].exclude_runs, "nor are the RL run's own"


def test_a_batch_run_is_priced_at_the_batch_discount_and_a_stage_model_takes_its_trainers_size(tmp_path):
    """Issue 35: the dry run printed the same $4,413 with teacher.batch=true; a GRPO stage whose model is the
    path an earlier stage trains had no parameter count, and the total left it out without a word."""
    from factory.pipeline import dry_run

    full = dry_run(load_pipeline(str(REPO / "pipelines" / "r1-distill-qwen7b.yaml"),
                                 ["generate.teacher.batch=true"]))
    assert full["generate"]["cost_usd"] == pytest.approx(4413.0 * 0.5, abs=0.01)
    multi = dry_run(load_pipeline(str(REPO / "pipelines" / "r1-multistage.yaml")))
    costs = multi["costs"]
    for stage in ("rl-reasoning", "rl-all"):  # stage:sft-cold and stage:sft, both qwen-7b
        assert costs[stage]["gpu_hours"] > 0
    assert "incomplete" not in multi["total"]
    assert multi["total"]["gpu_hours"] == pytest.approx(sum(c.get("gpu_hours") or 0 for c in costs.values()), abs=0.5)
    unknown = dry_run(load_pipeline(str(REPO / "pipelines" / "r1-multistage.yaml"),
                                    ["sft-cold.student=/models/mystery", "sft.student=/models/mystery"]))
    assert unknown["total"]["incomplete"] == ["sft-cold", "rl-reasoning", "sft", "rl-all"]


def test_the_plan_follows_the_budget_the_selection_and_the_teachers_limit():
    """Issue 36: the dry run planned past a budget, trained on every sample whatever max_per_prompt kept, at the
    student's length rather than the teacher's, rounded the quickstart's generation to 0 GPU-hours, and left
    the RL demo's GRPO (a path a distill stage wrote) unpriced."""
    from factory.pipeline import dry_run

    path = str(REPO / "pipelines" / "quickstart.yaml")
    plain = dry_run(load_pipeline(path))
    assert 0 < plain["costs"]["generate"]["gpu_hours"] < 0.01, "small, never rounded to 0"
    assert plain["total"]["gpu_hours"] >= plain["costs"]["generate"]["gpu_hours"] + plain["costs"]["distill"][
        "gpu_hours"]
    capped = dry_run(load_pipeline(path, ["generate.budget.max_samples=100"]))
    assert capped["costs"]["generate"]["samples"] == 100 < plain["costs"]["generate"]["samples"]
    assert any("capped by budget.max_samples: 100 of 384 samples" in " ".join(row) for row in capped["plan"])
    one = dry_run(load_pipeline(path, ["filter.selection.max_per_prompt=1"]))
    assert one["costs"]["distill"]["samples"] == 96 < plain["costs"]["distill"]["samples"], "one per prompt"
    short = dry_run(load_pipeline(path, ["generate.sampling.max_tokens=64", "filter.length.max_tokens=64"]))
    assert short["costs"]["distill"]["train_tokens"] < plain["costs"]["distill"]["train_tokens"]
    rl = dry_run(load_pipeline(str(REPO / "pipelines" / "quickstart-rl.yaml")))
    assert rl["costs"]["grpo"]["gpu_hours"] > 0 and "incomplete" not in rl["total"]


def test_set_reaches_every_eval_or_one_by_name():
    """`--set eval.size=80` sets every eval of the list; `--set eval.NAME.field=v` the one named; a key that names
    an eval (the quickstart's `teacher`) is that eval, not every eval's field of that name."""
    path = str(REPO / "pipelines" / "quickstart.yaml")
    p = load_pipeline(path, ["eval.size=80", "eval.student-after.size=10", "eval.teacher.sampling.n=2"])
    got = {name: (e.size, e.sampling.n) for name, e in p.evals}
    assert got == {"student-before": (80, 4), "student-after": (10, 4), "teacher": (80, 2)}
    with pytest.raises(FactoryError, match="size"):
        load_pipeline(path, ["eval.size=lots"])


def test_config_show_prints_every_resolved_value_and_where_it_came_from(capsys):
    path = str(REPO / "pipelines" / "quickstart.yaml")
    assert main(["config", "show", path, "--set", "eval.size=80",
                 "--set", "generate.teacher.headers.X-Key=hunter2-very-secret"]) == 0
    out = capsys.readouterr().out
    sections = {b.split("\n", 1)[0].strip("[]"): b.splitlines()[1:] for b in out.strip().split("\n\n")}
    assert list(sections) == ["generate", "filter", "card", "distill", "eval.student-before", "eval.student-after",
                              "eval.teacher", "eval.compare"]
    generate = sections["generate"]
    from factory.teachers import resolve_engine

    engine = resolve_engine("auto", "qwen2.5-coder-0.5b")  # what the stage's resolve picks on this machine
    for line in ["teacher.model = 'qwen2.5-coder-0.5b'  # file", "teacher.concurrency = 256  # default",
                 "out = 'runs/quickstart'  # derived", "teacher.headers = {'X-Key': '***'}  # --set",
                 "teacher.prices = None  # default", f"teacher.engine = '{engine}'  # " + ("file" if engine == "auto" else "derived from 'auto', file")]:
        assert line in generate, line
    assert "teacher.model = 'runs/quickstart/student/smollm2-135m/final'  # derived" in sections["eval.student-after"]
    assert "size = 80  # --set" in sections["eval.student-after"]
    assert "judge.teacher.model = 'gpt-4o-mini'  # default" in sections["filter"]
    assert "hunter2" not in out
