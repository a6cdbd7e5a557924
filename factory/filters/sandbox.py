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
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
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
    output_limited: bool = False  # killed for writing more than Limits.max_output_bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_limited


def available() -> bool:
    return shutil.which("bwrap") is not None and (os.getuid() != 0 or shutil.which("setpriv") is not None)


SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64")  # bound read-only, whole


def _in_system_dirs(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS)


def _command(workdir: Path, script: str) -> list[str]:
    prefix = sys.base_prefix
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv", "--setenv", "HOME", "/work",
           "--setenv", "PATH", "/usr/bin:/bin", "--perms", "1777", "--tmpfs", "/tmp", "--bind", str(workdir), "/work",
           "--chdir", "/work", "--proc", "/proc", "--dev", "/dev"]
    for path in SYSTEM_DIRS:
        if Path(path).exists():
            cmd += ["--ro-bind", path, path]
    # The prefix's parents (e.g. /root/.pyenv/versions, /root being 0700) are made traversable in the sandbox:
    # otherwise uid nobody cannot load the interpreter's own libpython and silently gets the system's one.
    if not _in_system_dirs(prefix):
        for parent in reversed(Path(prefix).parents[:-1]):  # [:-1]: not "/"
            cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", prefix, prefix]
    if os.getuid() == 0:  # drop to nobody inside, so that RLIMIT_NPROC applies
        cmd += ["--", "setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                "--no-new-privs"]
    else:
        cmd += ["--unshare-user", "--"]
    return cmd + [f"{prefix}/bin/python3", "-I", script]


def self_check() -> str | None:
    """None when the sandbox runs this very interpreter (same version and prefix); else what is wrong. A prefix
    that uid nobody cannot read would otherwise fail every code trace as 'tests_failed'."""
    probe = "import sys\nprint(sys.version)\nprint(sys.base_prefix)"
    r = run_python(probe, limits=Limits(timeout_s=30, cpu_s=10))
    want = [sys.version, sys.base_prefix]
    if r.ok and r.stdout.splitlines()[:3] == [*sys.version.splitlines(), sys.base_prefix]:
        return None
    if r.ok:
        got = " ".join(r.stdout.split())
        return f"the sandbox runs another Python ({got}) than this one ({' '.join(' '.join(want).split())})"
    why = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return (f"the sandbox cannot run {sys.base_prefix}/bin/python3 as uid {NOBODY} ({why}); make the Python "
            f"prefix readable by all (chmod -R o+rX {sys.base_prefix}) or run as a non-root user")


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
    """Run `code` as a script in the sandbox; never raises for anything the code does.

    Output is read as it comes, never more than `max_output_bytes` per stream held: a program that prints
    without end is killed when it passes the cap (or the deadline), so the host's memory stays flat."""
    with tempfile.TemporaryDirectory(prefix="factory-sandbox-") as tmp:
        workdir = Path(tmp)
        (workdir / "main.py").write_text(code)
        if os.getuid() == 0:
            os.chown(workdir, NOBODY, NOBODY)
        proc = subprocess.Popen(_command(workdir, "main.py"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_limit(limits), start_new_session=True)
        feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True)
        feeder.start()
        try:
            out, err, timed_out, limited = _collect(proc, time.monotonic() + limits.timeout_s,
                                                    limits.max_output_bytes)
        finally:
            if proc.poll() is None:
                _kill(proc)
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()
    cap = limits.max_output_bytes
    return Result(None if timed_out or limited else proc.returncode, out[:cap].decode(errors="replace"),
                  err[:cap].decode(errors="replace"), timed_out, limited)


def _feed(pipe, data: bytes) -> None:
    try:  # a program that never reads its stdin must not block us: this thread may die with the pipe
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # bwrap dies; --die-with-parent takes the whole PID namespace
    except ProcessLookupError:
        pass


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Reads stdout and stderr until both close, the deadline passes or either passes `cap` bytes."""
    out, err = bytearray(), bytearray()
    buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}

    def ended(timed_out: bool, limited: bool) -> tuple[bytes, bytes, bool, bool]:
        if timed_out or limited:
            _kill(proc)
        return bytes(out), bytes(err), timed_out, limited

    with selectors.DefaultSelector() as sel:
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ended(True, False)
            for key, _ in sel.select(min(remaining, 0.5)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = buffers[key.fd]
                buf += chunk[: max(0, cap + 1 - len(buf))]
                if len(buf) > cap:
                    return ended(False, True)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:  # closed its pipes but kept running
        return ended(True, False)
    return ended(False, False)
