"""Every trainer configuration the presets and the shipped pipelines produce, built as far as this CPU allows,
for the devices of a GPU node (bf16, flash-attention, Liger reported available) and for this CPU: a wrong
argument or an attribute error in a GPU branch fails here, not on the first GPU a user brings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factory.config.stages import DistillConfig
from factory.pipeline import load_pipeline
from factory.pipeline.load import resolve_refs
from tests.conftest import REPO
from train.devices import CPU, GPU, Devices
from train.grpo import grpo_arguments
from train.launch import launch_command
from train.sft import sft_arguments
from train.stages.grpo import GrpoConfig
from train.students import PRESETS, resolve_settings


def _training_configs() -> list[tuple[str, DistillConfig | GrpoConfig]]:
    configs: list[tuple[str, DistillConfig | GrpoConfig]] = []
    for name in PRESETS:
        configs.append((f"distill --student {name}", DistillConfig(student=name)))
        configs.append((f"grpo --model {name}", GrpoConfig(model=name)))
    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        p = load_pipeline(str(path))
        for inst in p.instances:
            if inst.kind in ("distill", "grpo"):
                configs.append((f"{path.name}:{inst.name}", resolve_refs(inst, p, prepare=False)))
    return configs


CONFIGS = _training_configs()


def _arguments(cfg: DistillConfig | GrpoConfig, dev: Devices, out: Path) -> tuple[type, dict]:
    if isinstance(cfg, DistillConfig):
        from trl import SFTConfig

        return SFTConfig, sft_arguments(cfg, resolve_settings(cfg), out, dev)
    from trl import GRPOConfig

    return GRPOConfig, grpo_arguments(cfg, out, [1.0] * len(cfg.rewards.active()), dev)


@pytest.mark.parametrize("label,cfg", CONFIGS, ids=[label for label, _ in CONFIGS])
def test_every_training_configuration_builds_for_a_gpu_node_and_for_this_cpu(label, cfg, tmp_path):
    kind, gpu = _arguments(cfg, GPU, tmp_path)
    assert gpu["model_init_kwargs"] == {"dtype": torch.bfloat16, "attn_implementation": "flash_attention_2"}
    assert gpu["bf16"] and gpu["use_liger_kernel"] and not gpu["use_cpu"] and gpu["dataloader_pin_memory"]
    if isinstance(cfg, DistillConfig) and cfg.packing != False:  # noqa: E712 - "auto" packs on flash-attention
        assert gpu["packing"] is True and gpu["max_length"] == resolve_settings(cfg).max_length
    if cfg.gradient_checkpointing:
        assert gpu["gradient_checkpointing_kwargs"] == {"use_reentrant": False}, "the variant FSDP supports"
    # transformers checks bf16 against the GPU it finds: everything else of the GPU branch is built for real here
    args = kind(**{**gpu, "bf16": False})
    assert args.model_init_kwargs["attn_implementation"] == "flash_attention_2" and args.use_liger_kernel
    cpu_args = kind(**_arguments(cfg, CPU, tmp_path)[1])
    assert cpu_args.model_init_kwargs == {"dtype": torch.float32} and not cpu_args.bf16 and cpu_args.use_cpu
    autocast = kind(**_arguments(cfg, Devices(cpu_bf16=True), tmp_path)[1])  # a CPU with AVX512_BF16 or AMX
    assert autocast.model_init_kwargs == {"dtype": torch.float32} and autocast.bf16 and autocast.use_cpu
    if isinstance(cfg, DistillConfig):
        assert cpu_args.packing is (cfg.packing is True)
    if cfg.launch:
        cmd = launch_command(cfg, tmp_path / "launch.yaml", "distill" if isinstance(cfg, DistillConfig) else "grpo")
        assert cmd[-2:] == ["--config", str(tmp_path / "launch.yaml")]


def test_the_devices_are_detected_from_torch_and_the_installed_kernels(monkeypatch):
    import importlib.util

    from train import devices

    if not torch.cuda.is_available():
        monkeypatch.setenv("FACTORY_CPU_BF16", "0")  # a CPU without native bf16: float32 throughout
        assert devices.detect() == CPU and devices.detect("fp32") == CPU
        assert devices.detect("bf16") == Devices(cpu_bf16=True), "asked for: autocast, emulated"
        monkeypatch.setenv("FACTORY_CPU_BF16", "1")  # AVX512_BF16, AMX or Arm BF16: autocast unless fp32 is asked
        assert devices.detect() == Devices(cpu_bf16=True) and devices.detect("fp32") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    found = {"flash_attn", "liger_kernel"}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in found else real(name, *a))
    assert devices.detect() == GPU
    found.clear()
    assert devices.detect() == Devices(cuda=True, bf16=True)
    assert devices.detect("fp32") == Devices(cuda=True), "fp32 asked for on a bf16 GPU"


def test_a_stage_passes_any_other_trl_argument_through_and_refuses_one_the_factory_sets(tmp_path):
    """TRL's configs composed, not mirrored: `trl:` reaches every argument of SFTConfig / GRPOConfig the factory
    does not set itself; one it sets, or one TRL lacks, is one line naming it."""
    from trl import GRPOConfig, SFTConfig

    from factory.core.errors import FactoryError
    from train.trl_args import compose

    cfg = DistillConfig(student="tiny", trl={"neftune_noise_alpha": 5.0, "weight_decay": 0.1})
    args = SFTConfig(**compose(sft_arguments(cfg, resolve_settings(cfg), tmp_path, CPU), cfg.trl, SFTConfig,
                               "distill"))
    assert (args.neftune_noise_alpha, args.weight_decay) == (5.0, 0.1)
    with pytest.raises(FactoryError, match=r"distill.trl.learning_rate: the factory sets it from distill.lr"):
        compose({}, {"learning_rate": 1.0}, SFTConfig, "distill")
    with pytest.raises(FactoryError, match=r"grpo.trl.no_such_knob: not an argument of trl.GRPOConfig"):
        compose({}, {"no_such_knob": 1}, GRPOConfig, "grpo")
    assert compose({"beta": 0.0}, {"top_k": 20}, GRPOConfig, "grpo") == {"beta": 0.0, "top_k": 20}
