"""Context extension of a student before SFT, as the reference R1 distillations did.

Qwen2.5-Math-1.5B/7B have 4,096 positions, and R1's traces run to 16-32k tokens. DeepSeek's R1-Distill-Qwen
configs ship `max_position_embeddings` 131072; open-r1 trained its distills on a copy of Qwen2.5-Math-7B with
`rope_theta` 300,000. A preset may declare both; the student is then trained from a copy of the base whose
config says so (weights and tokenizer linked, not copied), and the summary records it. A student without an
extension whose samples exceed its positions is refused: training past them degrades silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from factory.core.errors import FactoryError


def _local_dir(path: str) -> Path:
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]))


def rope_theta(config) -> float | None:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(config, "rope_theta", None))


def prepare(path: str, positions: int | None, theta: float | None, longest: int, out: Path,
            write: bool = True) -> tuple[str, dict[str, Any]]:
    """The path to train from and what was done. `longest`: the longest sample's tokens."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    base = config.max_position_embeddings
    record: dict[str, Any] = {"base_positions": base, "base_rope_theta": rope_theta(config), "extended": False}
    if positions is None or (positions <= base and theta in (None, rope_theta(config))):
        if longest > base:
            raise FactoryError(f"{path}: a sample of {longest} tokens exceeds the model's {base} positions; extend "
                               "the context (distill.max_position_embeddings, distill.rope_theta, as the R1-Distill "
                               "configs do) or lower max_length")
        return path, record
    if longest > positions:
        raise FactoryError(f"{path}: a sample of {longest} tokens exceeds the extended {positions} positions")
    copy = out / "base-extended"
    if write:
        _write_copy(_local_dir(path), copy, config, positions, theta)
    record.update(extended=True, max_position_embeddings=positions, rope_theta=theta or rope_theta(config),
                  trained_from=str(copy))
    return str(copy), record


def _write_copy(src: Path, copy: Path, config, positions: int, theta: float | None) -> None:
    tmp = copy.with_name(copy.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "config.json" and not (tmp / f.name).exists():
            os.symlink(f.resolve(), tmp / f.name)
    config.max_position_embeddings = positions
    if theta is not None:
        if getattr(config, "rope_parameters", None) is not None:
            config.rope_parameters["rope_theta"] = theta
        else:
            config.rope_theta = theta
    config.save_pretrained(tmp)
    if copy.exists():
        import shutil

        shutil.rmtree(copy)
    os.replace(tmp, copy)
