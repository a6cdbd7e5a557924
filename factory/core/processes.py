"""A stage in a process of its own: what holds a GPU (a vLLM engine, a trainer) gives its memory back when the
process ends, whatever the libraries inside it keep; the pipeline that started it keeps its state and locks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from pydantic import BaseModel

from .context import RunContext
from .errors import FactoryError


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now: for a server this process starts (llama-server,
    vLLM, a torch.distributed rendezvous, a Ray node). The OS picks it; another process could take it before the
    server binds, which the servers' own bind error then reports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(cfg: BaseModel, path: Path) -> Path:
    """The config as the child reads it back with --config (no secret is in a config: only variable names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def call(cmd: list[str]) -> int:
    """Runs cmd with this process's environment and returns its exit code. The child never outlives this process: it is killed with it (even by kill -9), and a SIGTERM or
    Ctrl-C here terminates it first (a training or vLLM child would otherwise go on holding the GPU)."""
    from .workpool import die_with_parent, stop

    proc = subprocess.Popen(cmd, preexec_fn=die_with_parent)
    with sigterm_interrupts():
        try:
            return proc.wait()
        except BaseException:
            stop(proc, grace_s=60)
            raise


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the block runs (main thread only: where Python delivers signals).
    A process forked meanwhile (a worker) inherits the handler but not the meaning: there SIGTERM ends it as
    usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def interrupt(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(command: str, cfg: BaseModel, cfg_file: Path, ctx: RunContext, *args: str) -> None:
    """`factory COMMAND [ARGS] --config CFG_FILE` in a child process that writes the section `ctx` names; a
    failure is one line (the child printed its own error above it)."""
    cmd = [sys.executable, "-m", "factory.cli", command, *args, *ctx.child_args(), "--config",
           str(write_config(cfg, cfg_file))]
    code = call(cmd)
    if code != 0:
        raise FactoryError(f"{command}: its process exited with code {code} (its error is above)")
