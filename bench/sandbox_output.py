"""The sandbox against a program that prints without end: host memory and the deadline, side by side with a
bare `subprocess.communicate()` on the same program (what the sandbox did before it read output incrementally).

    .venv/bin/python bench/sandbox_output.py [--gb 1] [--timeout 10]

Each variant runs in a fresh Python process, which reports its own peak RSS growth and wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROGRAM = "import sys\nfor _ in range({chunks}):\n    sys.stdout.write('x' * 65536)\n"

SANDBOX = """
import resource, time
from factory.filters.sandbox import Limits, run_python
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.monotonic()
r = run_python({program!r}, limits=Limits(timeout_s={timeout}))
print(round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, 1), round(time.monotonic() - t, 2),
      "output_limit" if r.output_limited else "timeout" if r.timed_out else r.returncode, len(r.stdout))
"""

COMMUNICATE = """
import resource, subprocess, sys, time
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.monotonic()
p = subprocess.Popen([sys.executable, "-c", {program!r}], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
try:
    out, _ = p.communicate(timeout={timeout})
    how = p.returncode
except subprocess.TimeoutExpired:
    p.kill()
    out, _ = p.communicate()
    how = "timeout"
print(round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, 1), round(time.monotonic() - t, 2),
      how, len(out))
"""


def measure(template: str, program: str, timeout: float) -> dict:
    code = template.format(program=program, timeout=timeout)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    rss, seconds, how, kept = out.stdout.split()
    return {"rss_growth_mb": float(rss), "seconds": float(seconds), "ended_by": how, "bytes_kept": int(kept)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0, help="output the program attempts")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    program = PROGRAM.format(chunks=int(args.gb * (1 << 30) / 65536))
    rows = {"factory sandbox (1 MiB cap)": measure(SANDBOX, program, args.timeout),
            "subprocess.communicate()": measure(COMMUNICATE, program, args.timeout)}
    print(f"{'variant':32} {'RSS growth MB':>14} {'seconds':>8} {'ended by':>14} {'bytes kept':>12}")
    for name, r in rows.items():
        print(f"{name:32} {r['rss_growth_mb']:>14} {r['seconds']:>8} {r['ended_by']:>14} {r['bytes_kept']:>12}")
    result = {"attempted_gb": args.gb, "timeout_s": args.timeout, "results": rows}
    (REPO / "bench" / "results" / "sandbox_output.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
