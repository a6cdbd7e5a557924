"""Running untrusted code: bubblewrap namespaces, rlimits, an unprivileged uid, a wall-clock timeout.

What the sandboxed program sees: read-only /usr, /lib, /bin and the Python prefix; a private writable work
directory (its only files) and a private /tmp; no network (its own empty network namespace); no environment
(no secrets); its own PID namespace, killed whole on timeout. When started as root it runs as uid 65534, so
RLIMIT_NPROC stops fork bombs (the kernel never applies that limit to root).

Hand-written: the sandboxes on PyPI either need Docker, which these machines lack, or are pure-Python
"restricted exec" that user code escapes.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    max_procs: int = 32
    max_output_bytes: int = 1 << 20


@dataclass(frozen=True)
class Result:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def available() -> bool:
    return shutil.which("bwrap") is not None and (os.getuid() != 0 or shutil.which("setpriv") is not None)


def _command(workdir: Path, script: str) -> list[str]:
    prefix = sys.base_prefix
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv", "--setenv", "HOME", "/work",
           "--setenv", "PATH", "/usr/bin:/bin", "--tmpfs", "/tmp", "--bind", str(workdir), "/work",
           "--chdir", "/work", "--proc", "/proc", "--dev", "/dev"]
    for path in ("/usr", "/bin", "/lib", "/lib64", prefix):
        if Path(path).exists():
            cmd += ["--ro-bind", path, path]
    if os.getuid() == 0:  # drop to nobody inside, so that RLIMIT_NPROC applies
        cmd += ["--", "setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                "--no-new-privs"]
    else:
        cmd += ["--unshare-user", "--"]
    return cmd + [f"{prefix}/bin/python3", "-I", script]


def _limit(limits: Limits):
    def apply() -> None:
        mb = 1 << 20
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_procs, limits.max_procs))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_python(code: str, stdin: str = "", limits: Limits = Limits()) -> Result:
    """Run `code` as a script in the sandbox; never raises for anything the code does."""
    with tempfile.TemporaryDirectory(prefix="factory-sandbox-") as tmp:
        workdir = Path(tmp)
        (workdir / "main.py").write_text(code)
        if os.getuid() == 0:
            os.chown(workdir, NOBODY, NOBODY)
        proc = subprocess.Popen(_command(workdir, "main.py"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_limit(limits), start_new_session=True)
        try:
            out, err = proc.communicate(stdin.encode(), timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap dies; --die-with-parent takes the whole PID namespace
            out, err = proc.communicate()
            timed_out = True
    cap = limits.max_output_bytes
    return Result(None if timed_out else proc.returncode, out[:cap].decode(errors="replace"),
                  err[:cap].decode(errors="replace"), timed_out)
