"""`factory view` at scale: how long the viewer takes to open a run and to serve its pages, on a real run
directory (a million traces: `bench/scale.py --keep /tmp/scale-run`, then this on /tmp/scale-run).

    .venv/bin/python bench/view.py RUN_DIR

Measured through Flask's test client (no network): the app's creation, the funnel page, the first, a middle and
a filtered page of the table, a search, and a trace page; each page the median of 5. Results:
bench/results/view.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from factory.view import create_app  # noqa: E402
from factory.view.data import RunData  # noqa: E402


def timed_get(client, url: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        resp = client.get(url)
        times.append(time.perf_counter() - started)
        assert resp.status_code == 200, (url, resp.status_code)
    return round(1000 * statistics.median(times), 1)


def main() -> None:
    run = Path(sys.argv[1])
    started = time.perf_counter()
    client = create_app(run).test_client()
    first = client.get("/")
    open_s = time.perf_counter() - started
    assert first.status_code == 200
    rows = RunData(run).scan().select("prompt_id", "sample_index").head(1).collect().row(0)
    total = json.loads((run / "filtered" / "stats.json").read_text())["funnel"]["in"]
    pages = {"funnel": "/", "table, first page": "/traces", "table, page 5,000": "/traces?page=5000",
             "rejected by correctness": "/traces?split=rejected&reason=correctness",
             "tokens and pass-rate range": "/traces?min_tokens=10&max_tokens=40&max_rate=0.5",
             "full-text search": "/traces?q=Problem+123456", "a trace": f"/trace/{rows[0]}/{rows[1]}"}
    out = {"rows": total, "open_s": round(open_s, 2), "page_ms": {k: timed_get(client, u) for k, u in pages.items()}}
    print(json.dumps(out, indent=2))
    path = REPO / "bench" / "results" / "view.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
