"""Escape attempts: each must fail inside the sandbox while the host stays untouched."""

import os
import socket
import threading
import time

import pytest

from factory import sandbox
from factory.sandbox import Limits, run_python

pytestmark = pytest.mark.skipif(not sandbox.available(), reason="bubblewrap is not installed (make setup installs it)")


def test_plain_program_runs_and_reads_stdin():
    r = run_python("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3")
    assert r.ok and r.stdout == "6\n"


def test_fork_bomb_is_contained():
    before = len(os.listdir("/proc"))
    r = run_python("import os\nwhile True:\n    os.fork()", limits=Limits(timeout_s=5))
    assert not r.ok and ("BlockingIOError" in r.stderr or r.timed_out)
    time.sleep(0.5)
    assert len(os.listdir("/proc")) < before + 20, "no processes left behind on the host"


def test_infinite_loop_is_killed():
    started = time.monotonic()
    r = run_python("while True:\n    pass", limits=Limits(timeout_s=3, cpu_s=1))
    assert not r.ok and time.monotonic() - started < 5


def test_sleeping_program_hits_the_wall_clock():
    r = run_python("import time\ntime.sleep(60)", limits=Limits(timeout_s=1))
    assert r.timed_out and r.returncode is None


def test_memory_hog_fails():
    r = run_python("x = bytearray(8 << 30)\nprint('allocated')", limits=Limits(memory_mb=512))
    assert not r.ok and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_writes_outside_the_work_dir_fail(tmp_path):
    target = tmp_path / "escaped.txt"
    r = run_python(f"open('/work/ok.txt', 'w').write('fine')\nopen({str(target)!r}, 'w').write('x')")
    assert not r.ok and not target.exists()
    r = run_python("open('/usr/lib/evil', 'w')")
    assert "Read-only file system" in r.stderr


def test_big_files_are_capped():
    r = run_python("open('/work/big', 'wb').write(b'x' * (64 << 20))", limits=Limits(file_size_mb=4))
    assert not r.ok


def test_host_environment_and_files_are_invisible(monkeypatch, smollm2_dir):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    assert smollm2_dir.exists()
    r = run_python(f"import os\nprint(sorted(os.environ))\nprint(os.path.exists('/etc/passwd'))\n"
                   f"print(os.path.exists({str(smollm2_dir)!r}))\nprint(os.listdir('/tmp'))")
    assert r.ok and "sk-host-secret" not in r.stdout and "OPENAI_API_KEY" not in r.stdout
    assert r.stdout.splitlines()[1:] == ["False", "False", "[]"]


def test_network_is_unreachable_even_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    r = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')")
    server.close()
    assert not r.ok and "connected" not in r.stdout and not accepted
