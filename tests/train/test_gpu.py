"""GPU paths: run only where CUDA is present (`pytest -m gpu`); the same logic runs on CPU in the other tests."""

import json

import pytest

from factory.cli import main
from tests.train.helpers import write_kept

pytestmark = pytest.mark.gpu


def test_bf16_training_on_one_gpu_with_packing_where_flash_attention_runs(tmp_path):
    from train.devices import detect

    run = write_kept(tmp_path / "run", n=32)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "8", "--no-progress"]) == 0
    summary = json.loads((run / "student" / "tiny" / "distill_summary.json").read_text())
    assert summary["packing"] is detect().flash_attn
    if summary["packing"]:
        assert summary["nonpad_share"] == 1.0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "student" / "tiny" / "final")
    assert str(model.dtype) == "torch.bfloat16"


def test_single_gpu_launch_config(tmp_path):
    run = write_kept(tmp_path / "run", n=16)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "2", "--no-progress",
                 "--launch", "single_gpu"]) == 0
    assert (run / "student" / "tiny" / "final" / "model.safetensors").exists()


def test_grpo_rollouts_on_vllm_colocated_with_training(tmp_path):
    """vLLM in the training process, asleep while the optimizer steps (TRL's colocate mode)."""
    run = tmp_path / "run"
    assert main(["grpo", str(run), "--model", "smollm2-135m", "--prompts", "gym:chain_sum", "--max-steps", "2",
                 "--no-progress", "--set", "prompts.size=4", "--set", "num_generations=4", "--set", "grad_accum=1",
                 "--set", "max_completion_length=64", "--set", "use_vllm=true", "--set", "vllm_mode=colocate",
                 "--set", "vllm_gpu_memory_utilization=0.2", "--set", "rewards.format.weight=0"]) == 0
    out = run / "rl" / "smollm2-135m"
    rows = [json.loads(line) for line in (out / "rl_metrics.jsonl").read_text().splitlines() if '"reward"' in line]
    assert [r["step"] for r in rows] == [1, 2] and (out / "final" / "config.json").exists()
