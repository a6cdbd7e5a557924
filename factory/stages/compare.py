"""`factory eval --compare A.json B.json ...`: results side by side, a bar chart with 95% error bars, and for each
result after the first, whether its difference from the first is larger than the noise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import FactoryError
from ..eval_metrics import difference

console = Console(stderr=True)


def load_result(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise FactoryError(f"{p}: no such eval result")
    try:
        result = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FactoryError(f"{p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    if not isinstance(result, dict) or "metrics" not in result or "problems" not in result:
        raise FactoryError(f"{p}: not a `factory eval` result (no metrics/problems)")
    return result


def compare(paths: list[str], png: str | None = None, metric: str = "pass@1") -> dict[str, Any]:
    if len(paths) < 2:
        raise FactoryError("--compare needs at least two result files")
    results = [load_result(p) for p in paths]
    names = _names(results)
    base = _per_problem(results[0], metric)
    rows = []
    for name, r in zip(names, results):
        m = r["metrics"].get(metric)
        if m is None:
            raise FactoryError(f"{name}: the result has no {metric}")
        rows.append({"name": name, "benchmark": r["benchmark"], "mean": m["mean"], "ci95": m["ci95"],
                     "vs_first": None if r is results[0] else difference(base, _per_problem(r, metric), metric)})
    out = {"metric": metric, "rows": rows}
    _print(out)
    if png:
        _plot(rows, metric, Path(png))
        out["png"] = png
        console.print(f"chart: {png}")
    return out


def _names(results: list[dict[str, Any]]) -> list[str]:
    names = [f"{r['label']} / {r['benchmark']}" for r in results]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _per_problem(result: dict[str, Any], metric: str) -> dict[str, float]:
    return {p["prompt_id"]: p["metrics"][metric] for p in result["problems"] if metric in p["metrics"]}


def _verdict(d: dict[str, Any] | None) -> str:
    if d is None:
        return "(reference)"
    if d["ci95"] is None:
        return f"{d['delta']:+.3f} (too few problems to tell)"
    word = "larger than the noise" if d["significant"] else "within the noise"
    return f"{d['delta']:+.3f} ± {d['ci95']:.3f} {'paired' if d['paired'] else 'unpaired'}: {word}"


def _print(out: dict[str, Any]) -> None:
    table = Table(title=f"{out['metric']} (95% CI)")
    for col in ("result", out["metric"], "vs the first"):
        table.add_column(col)
    for r in out["rows"]:
        ci = "" if r["ci95"] is None else f" ± {r['ci95']:.3f}"
        table.add_row(r["name"], f"{r['mean']:.3f}{ci}", _verdict(r["vs_first"]))
    console.print(table)
    first = out["rows"][0]["name"]
    for r in out["rows"][1:]:  # one unwrapped line each, for logs and narrow terminals
        console.print(f"{r['name']} vs {first}: {_verdict(r['vs_first'])}", soft_wrap=True, highlight=False)


def _plot(rows: list[dict[str, Any]], metric: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(rows)), 3.8))
    errs = [r["ci95"] or 0 for r in rows]
    ax.bar(range(len(rows)), [r["mean"] for r in rows], yerr=errs, capsize=6, color="#4c72b0")
    ax.set_xticks(range(len(rows)), [r["name"].replace(" / ", "\n") for r in rows], fontsize=8)
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_ylim(0, max(1.0, max(r["mean"] + e for r, e in zip(rows, errs))))
    ax.set_title("factory eval")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
