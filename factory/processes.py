"""A stage in a process of its own: what holds a GPU (a vLLM engine, a trainer) gives its memory back when the
process ends, whatever the libraries inside it keep; the pipeline that started it keeps its state and locks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel

from .errors import FactoryError
from .rundir import SECTION_ENV, current_section


def write_config(cfg: BaseModel, path: Path) -> Path:
    """The config as the child reads it back with --config (no secret is in a config: only variable names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def call(cmd: list[str]) -> int:
    """Runs cmd with this process's environment, plus the pipeline instance whose section it writes."""
    env = dict(os.environ)
    section = current_section()
    if section:
        env[SECTION_ENV] = section
    return subprocess.call(cmd, env=env)


def run_command(command: str, cfg: BaseModel, cfg_file: Path, *args: str) -> None:
    """`factory COMMAND [ARGS] --config CFG_FILE` in a child process; a failure is one line (the child printed
    its own error above it)."""
    cmd = [sys.executable, "-m", "factory.cli", command, *args, "--config", str(write_config(cfg, cfg_file))]
    code = call(cmd)
    if code != 0:
        raise FactoryError(f"{command}: its process exited with code {code} (its error is above)")
