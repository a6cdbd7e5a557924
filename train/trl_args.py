"""TRL's trainer configs composed, not mirrored: the factory sets what its own settings decide (the learning rate
from the preset, devices, packing, checkpoints...), and a stage's `trl:` block passes any other argument of
trl.SFTConfig or trl.GRPOConfig straight through, checked against TRL's own dataclass (so a TRL release that
adds one needs no change here)."""

from __future__ import annotations

import dataclasses
from typing import Any

from factory.core.errors import FactoryError

# the TRL arguments the factory sets from a setting of its own: the setting a user changes instead
OWN = {"learning_rate": "lr", "num_train_epochs": "epochs", "max_steps": "max_steps", "seed": "seed",
       "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
       "save_steps": "save_steps", "save_total_limit": "save_total_limit", "output_dir": "output_dir",
       "gradient_checkpointing": "gradient_checkpointing", "max_length": "max_length",
       "packing": "packing", "bf16": "precision", "fp16": "precision", "use_cpu": "precision"}


def compose(ours: dict[str, Any], theirs: dict[str, Any], config: type, where: str) -> dict[str, Any]:
    """`ours` (what the factory decided) with `theirs` (a stage's `trl:` block) added; an unknown argument or one
    of ours is one line naming it."""
    known = {f.name for f in dataclasses.fields(config)}
    for key in theirs:
        if key not in known:
            raise FactoryError(f"{where}.trl.{key}: not an argument of trl.{config.__name__}")
        if key in ours or key in OWN:
            setting = OWN.get(key)
            raise FactoryError(f"{where}.trl.{key}: the factory sets it" + (
                f" from {where}.{setting}: set that instead" if setting else " (from its own settings)"))
    return {**ours, **theirs}
