"""What the machine offers a training run (CUDA, bf16, flash-attention, Liger), detected in one place.

Every GPU-only branch of the trainers reads a `Devices`, never `torch.cuda` directly, so the tests can hand them
the devices of a GPU node and check the arguments that branch builds on a CPU machine.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Devices:
    cuda: bool = False
    bf16: bool = False  # the GPU computes in bf16 natively (Ampere and later)
    cpu_bf16: bool = False  # no GPU: float32 weights, matrix products under bf16 autocast
    flash_attn: bool = False  # flash-attn is installed and there is a GPU to run it
    liger: bool = False  # Liger kernels are installed and there is a GPU to run them


CPU = Devices()
GPU = Devices(cuda=True, bf16=True, flash_attn=True, liger=True)  # a current NVIDIA node with the gpu extra


def detect(precision: str = "auto") -> Devices:
    """The devices, in the precision a run asked for (TrainingSettings.precision): auto is bf16 where the hardware
    computes it, on a GPU or on a CPU with AVX512_BF16/AMX/Arm BF16 (there as autocast: the weights, gradients and
    optimizer stay float32)."""
    import torch

    from factory.core.hardware import native_bf16

    cuda = torch.cuda.is_available()
    wanted = {"fp32": False, "bf16": True}.get(precision)
    return Devices(cuda=cuda, bf16=cuda and (torch.cuda.is_bf16_supported() if wanted is None else wanted),
                   cpu_bf16=not cuda and (native_bf16() if wanted is None else wanted),
                   flash_attn=cuda and importlib.util.find_spec("flash_attn") is not None,
                   liger=cuda and importlib.util.find_spec("liger_kernel") is not None)


def model_init_kwargs(dev: Devices) -> dict:
    """How TRL loads the model from its path: bf16 where the GPU has it, flash-attention where installed."""
    import torch

    kwargs: dict = {"dtype": torch.bfloat16 if dev.bf16 else torch.float32}
    if dev.flash_attn:
        kwargs["attn_implementation"] = "flash_attention_2"
    return kwargs


def device_arguments(dev: Devices) -> dict:
    """The TrainingArguments both trainers take from the devices (bf16 without a GPU: accelerate's CPU autocast)."""
    return {"bf16": dev.bf16 or dev.cpu_bf16, "use_cpu": not dev.cuda, "dataloader_pin_memory": dev.cuda}
