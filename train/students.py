"""Student presets: the R1 distillation bases, the two bundled models, and `tiny` for tests.

Any other local path or Hub id works too; it gets the generic defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from factory.config.stages import DistillConfig
from factory.core.errors import FactoryError
from factory.storage.rundir import FINAL, RunDir

LLAMA_QWEN_LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Student:
    name: str
    model: str  # Hub id, local path, or bundled alias
    lr: float = 1e-5
    epochs: float = 2.0  # R1's distillation recipe
    max_length: int = 16384
    batch_size: int = 1
    grad_accum: int = 16
    lora_targets: list[str] = field(default_factory=lambda: list(LLAMA_QWEN_LORA))
    chat_template: str | None = None  # None: the family's R1-style template (factory.core.chat_templates)
    on_cpu: bool = False
    max_position_embeddings: int | None = None  # context extension before training (train/context.py)
    rope_theta: float | None = None
    params_b: float | None = None  # parameters, in billions (the dry run's training FLOPs); None: unknown


# The R1-Distill-Qwen configs ship 131,072 positions; open-r1 trained on Qwen2.5-Math-7B with rope_theta 300k.
R1_QWEN_MATH_CONTEXT = {"max_position_embeddings": 131072, "rope_theta": 300000.0}


PRESETS = {s.name: s for s in [
    Student("qwen-1.5b", "Qwen/Qwen2.5-Math-1.5B", lr=5e-5, max_length=16384, params_b=1.54, **R1_QWEN_MATH_CONTEXT),
    Student("qwen-7b", "Qwen/Qwen2.5-Math-7B", lr=5e-5, max_length=16384, params_b=7.62, **R1_QWEN_MATH_CONTEXT),
    Student("qwen-14b", "Qwen/Qwen2.5-14B", lr=2e-5, max_length=16384, params_b=14.77),
    Student("qwen-32b", "Qwen/Qwen2.5-32B", lr=1e-5, max_length=16384, params_b=32.76),
    Student("llama-8b", "meta-llama/Llama-3.1-8B", lr=2e-5, max_length=16384, params_b=8.03),
    Student("llama-70b", "meta-llama/Llama-3.3-70B-Instruct", lr=1e-5, max_length=16384, params_b=70.55),
    Student("smollm2-135m", "smollm2-135m", lr=5e-5, max_length=2048, batch_size=4, grad_accum=1, on_cpu=True,
            params_b=0.1345),
    Student("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b", lr=2e-5, max_length=2048, batch_size=2, grad_accum=2,
            on_cpu=True, params_b=0.494),
    Student("tiny", "tiny", lr=1e-3, max_length=512, batch_size=8, grad_accum=1, on_cpu=True),
]}


def resolve_student(spec: str) -> Student:
    """A preset by name, or any local path / Hub id (`org/name`) with generic defaults."""
    if spec in PRESETS:
        return PRESETS[spec]
    if Path(spec).exists() or "/" in spec:
        return replace(PRESETS["qwen-7b"], name=Path(spec).name or spec, model=spec, max_position_embeddings=None,
                       params_b=None,
                       rope_theta=None)
    raise FactoryError(f"--student {spec!r}: unknown preset (presets: {', '.join(PRESETS)}; "
                       "or give a local path or a Hub id)")


@dataclass(frozen=True)
class Settings:
    """A distill run's resolved settings: each the config's value where it sets one, else the preset's."""

    preset: Student
    lr: float
    epochs: float
    max_length: int
    batch_size: int
    grad_accum: int
    max_position_embeddings: int | None
    rope_theta: float | None


def resolve_settings(cfg: DistillConfig) -> Settings:
    preset = resolve_student(cfg.student)
    names = ("lr", "epochs", "max_length", "batch_size", "grad_accum", "max_position_embeddings", "rope_theta")
    return Settings(preset, **{n: getattr(cfg, n) if getattr(cfg, n) is not None else getattr(preset, n)
                               for n in names})


def output_dir(cfg: DistillConfig) -> Path:
    """Where distill writes the student's checkpoints (default RUN_DIR/student/PRESET)."""
    return Path(cfg.output_dir or RunDir(cfg.run_dir).student(resolve_student(cfg.student).name))


def final_dir(cfg: DistillConfig) -> Path:
    """The trained student: a standard transformers checkpoint."""
    return output_dir(cfg) / FINAL


def model_path(student: Student) -> str:
    """Where to load the student from: bundled aliases and `tiny` are built locally, the rest pass through."""
    from factory.storage.models import resolve_model

    if student.model == "tiny":
        return str(tiny_model())
    return resolve_model(student.model)


def tiny_model() -> Path:
    """A random 2-layer Llama (hidden 64) with the bundled SmolLM2 tokenizer and chat template, built once."""
    import os
    import shutil

    from factory.storage.models import cache_root, resolve_model

    from .synthetic import build_tiny_model

    out = cache_root() / "models" / "tiny"
    if (out / "READY").exists():
        return out
    staging = out.with_name("tiny.tmp")
    build_tiny_model(staging, resolve_model("smollm2-135m"))
    (staging / "READY").write_text("random\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return out
