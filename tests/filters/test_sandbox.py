"""Escape attempts: each must fail inside the sandbox while the host stays untouched."""

import os
import socket
import threading
import time

import pytest

from factory.filters import sandbox
from factory.filters.sandbox import Limits, run_python

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


def test_endless_output_is_cut_at_the_cap_without_host_memory_growth():
    """1 GB of attempted output: the sandbox is killed at the cap, the host's RSS barely moves, the deadline holds."""
    import subprocess
    import sys

    probe = ("import resource, time\nfrom factory.filters.sandbox import Limits, run_python\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nt = time.monotonic()\n"
             "r = run_python('import sys\\nfor _ in range(16384): sys.stdout.write(\"x\" * 65536)', "
             "limits=Limits(timeout_s=10))\n"
             "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
             "print(r.output_limited, r.ok, len(r.stdout), round(grown), round(time.monotonic() - t, 2))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    limited, ok, kept, grown_mb, seconds = out.stdout.split()
    assert (limited, ok, int(kept)) == ("True", "False", Limits().max_output_bytes)
    assert int(grown_mb) < 100 and float(seconds) < 11


def test_slow_endless_output_keeps_the_deadline():
    started = time.monotonic()
    r = run_python("import sys, time\nwhile True:\n    print('x', flush=True)\n    time.sleep(0.001)",
                   limits=Limits(timeout_s=2))
    assert r.timed_out and not r.output_limited and r.stdout.startswith("x\n")
    assert time.monotonic() - started < 3


def test_output_limit_is_a_verdict_of_its_own():
    from factory.filters.correctness import CorrectnessParams, code_correct
    from factory.storage.records import Prompt

    prompt = Prompt(source="t", task="code", problem="p", tests="assert f() == 1")
    trace = {"answer": "```python\ndef f():\n    while True:\n        print('y' * 4096)\n```"}
    v = code_correct(trace, prompt, CorrectnessParams(code_timeout_s=5))
    assert not v.ok and v.reason == "output_limit"


def test_private_tmp_is_writable_by_the_sandboxed_user():
    r = run_python("open('/tmp/scratch', 'w').write('ok')\nprint(open('/tmp/scratch').read())")
    assert r.ok and r.stdout == "ok\n"


def test_the_sandbox_runs_this_interpreter():
    import sys

    assert sandbox.self_check() is None
    r = run_python("import sys\nprint(sys.version)\nprint(sys.base_prefix)")
    assert r.ok and r.stdout.splitlines() == [*sys.version.splitlines(), sys.base_prefix]
