"""`factory distill --launch fsdp` (and `factory grpo --launch ...`): re-runs the same command under `accelerate
launch` with a shipped config.

The shipped configs live in train/launch/: single_gpu, fsdp (one node, FSDP2), deepspeed_zero3, multi_node, and
cpu_gloo (two CPU processes over gloo, which is how the tests exercise the distributed path).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from pydantic import BaseModel

from factory.core.context import DIRECT, RunContext
from factory.core.errors import FactoryError
from factory.core.processes import call, free_port, write_config

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


def launch_command(cfg: BaseModel, cfg_file: Path, command: str = "distill", ctx: RunContext = DIRECT) -> list[str]:
    """The command line that runs `factory COMMAND` with this config in processes of its own: under the
    config's `launch` (accelerate, or torchrun for CPU processes over gloo), or as one plain process."""
    child = cfg.model_copy(update={"launch": None, "num_processes": None})  # the processes train; they never relaunch
    settings: dict = {}
    if cfg.launch:
        config_file = launch_config(cfg.launch)
        settings = yaml.safe_load(config_file.read_text()) or {}
        child = _one_checkpointing(child, settings)
    write_config(child, cfg_file)
    tail = ["-m", "factory.cli", command, cfg.run_dir, *ctx.child_args(), "--config", str(cfg_file)]
    if not cfg.launch:
        return [sys.executable, *tail]
    if settings.get("distributed_type") == "MULTI_CPU":
        # accelerate launches multi-CPU runs through mpirun only; torchrun starts the same gloo processes without it
        n = cfg.num_processes or settings.get("num_processes", 2)
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
                "--master-port", str(free_port()), *tail]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if cfg.num_processes:
        cmd += ["--num_processes", str(cfg.num_processes)]
    if settings.get("num_machines", 1) == 1:  # a free port, so two single-node runs never collide
        cmd += ["--main_process_port", str(free_port())]
    return cmd + tail


def _one_checkpointing(cfg: BaseModel, settings: dict) -> BaseModel:
    """FSDP's activation checkpointing and the trainer's gradient checkpointing together raise at the first step
    (transformers refuses both); they do the same thing, so FSDP's is kept when the launch config asks for it."""
    if (settings.get("fsdp_config") or {}).get("fsdp_activation_checkpointing") and cfg.gradient_checkpointing:
        print("launch: the launch config's fsdp_activation_checkpointing replaces gradient_checkpointing",
              file=sys.stderr)
        return cfg.model_copy(update={"gradient_checkpointing": False})
    return cfg


def relaunch(cfg: BaseModel, out: Path, command: str = "distill", ctx: RunContext = DIRECT) -> int:
    """Runs the command in processes of its own (writing the section `ctx` names), its config written into its
    output directory `out`; returns their exit code."""
    cmd = launch_command(cfg, out / f"launch.{command}.yaml", command, ctx)
    print("launching:", " ".join(cmd), file=sys.stderr)
    return call(cmd)


def train_in_processes(cfg: BaseModel, command: str, out: Path, ctx: RunContext = DIRECT) -> Path:
    """A pipeline's training stage: the processes of `cfg.launch` (or one plain process) train while the pipeline
    keeps its state and locks; GPU memory is the training processes' own and goes with them. Returns the summary
    file they wrote (OUT/COMMAND_summary.json)."""
    summary = out / f"{command}_summary.json"
    summary.unlink(missing_ok=True)  # a summary of an earlier run must not pass for this one
    code = relaunch(cfg, out, command, ctx)
    if code != 0 or not summary.exists():
        raise FactoryError(f"{command}: the training processes exited with code {code} (their error is above)")
    return summary
