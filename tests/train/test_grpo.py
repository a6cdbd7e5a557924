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
from factory.errors import FactoryError
from tests.conftest import REPO

SMALL = ["--prompts", "gym:chain_sum", "--no-progress", "--set", "prompts.size=4", "--set", "num_generations=4",
         "--set", "grad_accum=1", "--set", "beta=0"]


def test_a_few_steps_on_smollm2_change_the_weights_and_log_every_reward(tmp_path):
    """Accuracy, format and DAPO's length penalty (from 16 tokens on) give the groups different rewards."""
    from safetensors.torch import load_file

    from factory.models import model_dir

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

    from factory.chat_templates import R1_ZERO

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
        from factory.config import build
        from factory.grpo_config import GrpoConfig

        build(GrpoConfig, {"num_generations": 3, "batch_size": 4, "grad_accum": 1})
    assert main(["grpo", str(tmp_path), "--model", "tiny", *SMALL, "--set", "max_prompt_length=8"]) == 1
    with pytest.raises(FactoryError, match="use_vllm=true needs a GPU"):  # vLLM's weight sync fails on a CPU
        from factory.config import build
        from factory.grpo_config import GrpoConfig
        from train import grpo

        grpo.run(build(GrpoConfig, {"model": "tiny", "use_vllm": True, "run_dir": str(tmp_path)}))


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
