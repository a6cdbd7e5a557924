"""`factory distill --launch fsdp` (and `factory grpo --launch ...`): re-runs the same command under `accelerate
launch` with a shipped config.

The shipped configs live in train/launch/: single_gpu, fsdp (one node, FSDP2), deepspeed_zero3, multi_node, and
cpu_gloo (two CPU processes over gloo, which is how the tests exercise the distributed path).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel

from factory.errors import FactoryError

LAUNCH_DIR = Path(__file__).parent / "launch"


def shipped() -> list[str]:
    return sorted(p.stem for p in LAUNCH_DIR.glob("*.yaml"))


def launch_config(name: str) -> Path:
    """A shipped config by name, or a path to the user's own accelerate config."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise FactoryError(f"--launch {name}: no such file")
        return path
    if (LAUNCH_DIR / f"{name}.yaml").exists():
        return LAUNCH_DIR / f"{name}.yaml"
    raise FactoryError(f"--launch {name}: unknown (shipped: {', '.join(shipped())}; or a path to an accelerate YAML)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(cfg: BaseModel, launch: str, num_processes: int | None, cfg_file: Path,
                   command: str = "distill") -> list[str]:
    config_file = launch_config(launch)
    settings = yaml.safe_load(config_file.read_text()) or {}
    cfg_file.parent.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    tail = ["-m", "factory.cli", command, cfg.run_dir, "--config", str(cfg_file)]
    if settings.get("distributed_type") == "MULTI_CPU":
        # accelerate launches multi-CPU runs through mpirun only; torchrun starts the same gloo processes without it
        n = num_processes or settings.get("num_processes", 2)
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
                "--master-port", str(_free_port()), *tail]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if num_processes:
        cmd += ["--num_processes", str(num_processes)]
    if settings.get("num_machines", 1) == 1:  # a free port, so two single-node runs never collide
        cmd += ["--main_process_port", str(_free_port())]
    return cmd + tail


def relaunch(cfg: BaseModel, launch: str, num_processes: int | None, command: str = "distill") -> int:
    if command == "grpo":
        from .grpo import output_dir
    else:
        from .students import output_dir

    out = output_dir(cfg)
    cmd = launch_command(cfg, launch, num_processes, out / f"launch.{command}.yaml", command)
    print("launching:", " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)
