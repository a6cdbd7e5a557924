"""GPU paths: run only where CUDA is present (`pytest -m gpu`); the same logic runs on CPU in the other tests."""

import json

import pytest

from factory.cli import main
from tests.train.helpers import write_kept

pytestmark = pytest.mark.gpu


def test_bf16_training_on_one_gpu_with_packing_where_flash_attention_runs(tmp_path):
    from train.batching import flash_attention_available

    run = write_kept(tmp_path / "run", n=32)
    assert main(["distill", str(run), "--student", "tiny", "--max-steps", "8", "--no-progress"]) == 0
    summary = json.loads((run / "student" / "tiny" / "distill_summary.json").read_text())
    assert summary["packing"] is flash_attention_available()
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
