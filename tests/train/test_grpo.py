"""`factory grpo` on CPU: TRL's GRPOTrainer with the filters as rewards, on the bundled SmolLM2 and the tiny model.
A few steps change the weights and log every metric; kill -9 then --resume continues from the last complete
checkpoint with the same prompts in the same order."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from factory.cli import main
from factory.core.errors import FactoryError
from tests.conftest import REPO

SMALL = ["--prompts", "gym:chain_sum", "--no-progress", "--set", "prompts.size=4", "--set", "num_generations=4",
         "--set", "grad_accum=1", "--set", "beta=0"]


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_a_few_steps_on_smollm2_change_the_weights_and_log_every_reward(tmp_path):
    """Accuracy, format and DAPO's length penalty (from 16 tokens on) give the groups different rewards."""
    from safetensors.torch import load_file

    from factory.storage.models import model_dir

    run = tmp_path / "run"
    assert main(["grpo", str(run), "--model", "smollm2-135m", "--max-steps", "2", *SMALL,
                 "--set", "max_completion_length=96", "--set", "save_steps=100", "--set", "lr=1e-5",
                 "--set", "rewards.format.format.require_think_tags=false", "--set", "rewards.length.weight=1",
                 "--set", "rewards.length.buffer=80", "--set", "mask_truncated_completions=false"]) == 0
    out = run / "rl" / "smollm2-135m"
    rows = [json.loads(line) for line in (out / "rl_metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for key in ("reward", "reward_std", "rewards/accuracy/mean", "rewards/format/mean", "rewards/length/mean",
                "completions/mean_length", "completions/clipped_ratio", "entropy", "loss", "grad_norm"):
        assert all(key in r for r in steps), key
    assert any(r["reward_std"] > 0 for r in steps), "no group had different rewards: nothing to learn from"
    assert all(0 < r["generate_s"] < r["step_s"] for r in steps), "each step splits into generation and update"
    before, after = load_file(model_dir("smollm2-135m") / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert any(not (before[k] == after[k]).all() for k in before), "the weights did not move"
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["steps"] == 2 and summary["rewards"] == {"accuracy": 1.0, "format": 1.0, "length": 1.0}
    assert summary["timing"]["steps_timed"] == 2 and 0 < summary["timing"]["generate_share"] < 1
    idle = summary["groups_without_signal"]
    assert idle["steps"] == 2 and idle["share"] == sum(r["frac_reward_zero_std"] for r in steps) / 2
    assert "s generating the rollouts" in (out / "summary.md").read_text()
    from transformers import AutoTokenizer, GenerationConfig

    im_end = AutoTokenizer.from_pretrained(out / "final").convert_tokens_to_ids("<|im_end|>")
    assert summary["stops_at"] == "<|im_end|>" and GenerationConfig.from_pretrained(out / "final").eos_token_id in (
        im_end, [im_end]), "a chat policy's final stops at the end of turn"
    assert summary["data"]["template"] == "chat" and summary["data"]["mean_prompt_tokens"] > 20
    user = [{"role": "user", "content": "hi"}]
    assert AutoTokenizer.from_pretrained(out / "final").apply_chat_template(
        user, tokenize=False, add_generation_prompt=True) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", \
        "trained and saved without SmolLM2's hidden system prompt (R1 used none)"
    assert (out / "rewards.png").stat().st_size > 1000 and (out / "length.png").stat().st_size > 1000
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 8 and {r["step"] for r in rollouts} == {0, 1}
    assert all(set(r["rewards"]) == {"accuracy", "format", "length"} for r in rollouts)
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert resolved["grpo"]["config"]["rewards"]["length"]["weight"] == 1.0 and resolved["grpo"]["fingerprint"]


def test_an_r1_zero_policy_is_saved_with_the_template_it_trained_on(tmp_path):
    """Every engine renders a model's chat template: an R1-Zero policy's is R1-Zero's, so evals and rejection
    sampling prompt it as it was trained (not under ChatML)."""
    from transformers import AutoTokenizer

    from factory.core.chat_templates import R1_ZERO

    run = tmp_path / "run"
    assert main(["grpo", str(run), "--model", "tiny", "--max-steps", "2", *SMALL, "--set", "template=r1-zero",
                 "--set", "max_completion_length=8", "--set", "save_steps=100", "--set", "rewards.workers=1",
                 "--set", "rewards.control=shuffled"]) == 0
    out = run / "rl" / "tiny"
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["data"]["template"] == "r1-zero" and summary["control"] == "shuffled"
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 8 and all(set(r["true_rewards"]) == set(r["rewards"]) for r in rollouts)
    md = (out / "summary.md").read_text()
    assert "control: rewards shuffled within each group" in md and "accuracy earned (not given)" in md
    assert "## Rollouts of the first step (1)" in md and "## Rollouts of the last step (2)" in md
    user = [{"role": "user", "content": "What is {2} + 2?"}]
    text = AutoTokenizer.from_pretrained(out / "final").apply_chat_template(user, tokenize=False,
                                                                            add_generation_prompt=True)
    assert text == R1_ZERO.format(prompt="What is {2} + 2?")


def _cmd(run, *extra):
    return [sys.executable, "-m", "factory.cli", "grpo", str(run), "--model", "tiny", "--max-steps", "5", *SMALL,
            "--set", "prompts.size=8", "--set", "max_completion_length=8", "--set", "save_steps=2",
            "--set", "rewards.workers=1", *extra]


def _prompts_by_step(out):
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    by_step: dict[int, list[str]] = {}
    for r in rows:
        by_step.setdefault(r["step"], []).append(r["prompt_id"])
    return by_step


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_kill_then_resume_continues_from_the_last_complete_checkpoint_with_the_same_prompts(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    whole = tmp_path / "whole"
    assert subprocess.run(_cmd(whole), env=env, capture_output=True).returncode == 0
    run = tmp_path / "run"
    out = run / "rl" / "tiny"
    proc = subprocess.Popen(_cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2" / "COMPLETE").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(_cmd(run, "--resume"), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["steps"] == 5 and summary["resumed_from"].split("-")[-1] in ("2", "4")
    assert _prompts_by_step(out) == _prompts_by_step(whole / "rl" / "tiny"), "the same prompts at every step"
    metric_steps = [json.loads(line)["step"] for line in (out / "rl_metrics.jsonl").read_text().splitlines()
                    if "reward" in line]
    assert metric_steps == [1, 2, 3, 4, 5], "each step logged once, whatever ran twice"


def test_bad_settings_are_one_line(tmp_path):
    with pytest.raises(FactoryError, match="multiple of num_generations"):
        from factory.config.loader import build
        from train.stages.grpo import GrpoConfig

        build(GrpoConfig, {"num_generations": 3, "batch_size": 4, "grad_accum": 1})
    assert main(["grpo", str(tmp_path), "--model", "tiny", *SMALL, "--set", "max_prompt_length=8"]) == 1
    with pytest.raises(FactoryError, match="use_vllm=true needs a GPU"):  # vLLM's weight sync fails on a CPU
        from factory.config.loader import build
        from train import grpo
        from train.stages.grpo import GrpoConfig

        grpo.run(build(GrpoConfig, {"model": "tiny", "use_vllm": True, "run_dir": str(tmp_path)}))


@pytest.mark.slow  # >= 10 s on 2 cores (--durations)
def test_two_gloo_processes_train_one_policy_and_rank_0_alone_writes_the_logs(tmp_path):
    """The distributed path of GRPO on CPU: each rank scores its completions on its own kept pool; one writer
    per log (two appending to one rollouts.jsonl would interleave lines)."""
    run = tmp_path / "run"
    assert main(["grpo", str(run), "--model", "tiny", "--max-steps", "2", *SMALL,
                 "--set", "max_completion_length=8", "--set", "rewards.workers=2", "--launch", "cpu_gloo"]) == 0
    out = run / "rl" / "tiny"
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    steps = [json.loads(line) for line in (out / "rl_metrics.jsonl").read_text().splitlines() if '"reward"' in line]
    assert [r["step"] for r in steps] == [1, 2], "one metrics row a step, not one per rank"
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and {r["step"] for r in rollouts} == {0, 1} and not list(out.glob("rollouts.rank*"))
    assert (out / "final" / "config.json").exists()


def _graded_run(tmp_path, right_of_four: list[int | None]):
    """Prompts "What is k + k?" and a run whose filter graded 4 samples of prompt k, right_of_four[k] of them right
    (None: no samples); the traces are written as `factory generate` writes them, then `factory filter` runs."""
    from factory.config.stages import PromptsConfig
    from factory.sources import load_prompts
    from factory.storage.records import TRACE_SCHEMA, Trace
    from factory.storage.rundir import RunDir
    from factory.storage.shards import write_shards
    from tests.conftest import write_jsonl

    prompts_file = write_jsonl(tmp_path / "p.jsonl", [{"problem": f"What is {k} + {k}?", "answer": str(2 * k)}
                                                      for k in range(len(right_of_four))])
    rows = []
    for k, p in enumerate(load_prompts(PromptsConfig(source=str(prompts_file)))):
        for s in range(4 if right_of_four[k] is not None else 0):
            answer = 2 * k if s < right_of_four[k] else 2 * k + 1
            rows.append(Trace(prompt=p, sample_index=s, teacher_model="policy", engine="vllm", sampling="{}",
                              messages=json.dumps([{"role": "user", "content": p.problem}]),
                              reasoning=f"{k} plus {k} is {answer}.", answer=f"So \\boxed{{{answer}}}.",
                              raw_completion="x", reasoning_source="think_tags", finish_reason="stop").to_row())
    run = tmp_path / "pool"
    write_shards(RunDir(run).traces, rows, TRACE_SCHEMA)
    assert main(["filter", str(run), "--no-progress", "--workers", "1"]) == 0
    return prompts_file, run


def test_pass_rates_from_a_first_pass_keep_only_prompts_that_can_teach(tmp_path, smollm2_dir):
    """A group of 8 all right or all wrong has zero advantage: prompts graded 0/4 or 4/4 by the filter are left
    out, those in between kept in order, the ungraded counted; the summary says so."""
    from transformers import AutoTokenizer

    from train.grpo import build_dataset
    from train.rl_report import write_summary
    from train.stages.grpo import GrpoConfig

    prompts_file, pool = _graded_run(tmp_path, [0, 1, 4, 3, None, 2, 4])
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    cfg = GrpoConfig(run_dir=str(tmp_path / "rl"), prompts={"source": str(prompts_file)},
                     pass_rates={"enabled": True, "run": str(pool), "min_pass_rate": 0.1, "max_pass_rate": 0.9})
    data, report = build_dataset(cfg, tokenizer, "chat")
    assert data["problem"] == ["What is 1 + 1?", "What is 3 + 3?", "What is 5 + 5?"]
    assert report["prompts"] == 3 and report["pass_rate_selection"] == {
        "graded": 6, "too_hard": 1, "too_easy": 2, "ungraded": 1, "kept": 3, "run": str(pool), "range": [0.1, 0.9]}
    data, _ = build_dataset(cfg.model_copy(update={"pass_rates": cfg.pass_rates.model_copy(
        update={"min_pass_rate": 0.0, "max_pass_rate": 0.5})}), tokenizer, "chat")
    assert data["problem"] == ["What is 0 + 0?", "What is 1 + 1?", "What is 5 + 5?"], "the bounds are inclusive"
    write_summary(tmp_path, {"steps": 2, "model": "m", "rewards": {"accuracy": 1.0}, "data": report,
                             "groups_without_signal": {"share": 0.25, "steps_all_zero": 0, "steps": 2}}, [])
    text = (tmp_path / "summary.md").read_text()
    assert "Trained on 3 prompts with a pass rate in [0.1, 0.9]" in text and "2 too easy, 1 too hard" in text
    assert "25% of prompt groups had rewards all equal" in text


def test_pass_rate_selection_without_a_graded_run_or_a_prompt_in_range_is_one_line(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    from train.grpo import build_dataset
    from train.stages.grpo import GrpoConfig

    prompts_file, pool = _graded_run(tmp_path, [0, 4])
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    alone = GrpoConfig(run_dir=str(tmp_path / "rl"), prompts={"source": str(prompts_file)},
                       pass_rates={"enabled": True})
    with pytest.raises(FactoryError, match=r"rl/filtered holds no filtered shards: run generate .* and filter"):
        build_dataset(alone, tokenizer, "chat")
    graded = alone.model_copy(update={"run_dir": str(pool)})  # the default: this run's own filter
    with pytest.raises(FactoryError, match=r"no prompt of .*p.jsonl has a pass rate in \[0.1, 0.9\] in .*'too_hard': 1"):
        build_dataset(graded, tokenizer, "chat")
    with pytest.raises(ValueError, match="min_pass_rate .* is above max_pass_rate"):
        GrpoConfig(pass_rates={"enabled": True, "min_pass_rate": 0.8, "max_pass_rate": 0.2})
