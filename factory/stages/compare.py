"""`factory eval --compare A.json B.json ...`: results side by side, a bar chart with 95% error bars, and for each
result after the first, whether its difference from the first is larger than the noise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field
from rich.console import Console
from rich.table import Table

from ..config.strict import Strict
from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.eval_metrics import LENIENT, TOKENS_PER_CORRECT, difference
from ..core.results import StageResult
from .estimates import Estimate, EstimateContext

console = Console(stderr=True)

KIND, ORDER = "compare", 70


class Config(Strict):
    """Eval results side by side. In a pipeline, each eval block of two or more evals gets one (named
    BLOCK.compare), over its results in the block's order: the first is the reference."""

    files: list[str] = Field(default_factory=list, description="Eval result files (two or more); the first is "
                             "the reference")
    png: str = Field("eval/compare.png", description="The bar chart (a .png file, or a directory)")
    md: str | None = Field(None, description="Also write the comparison as Markdown here")
    metric: str = Field("pass@1", description="The metric compared")
    pairs: list[tuple[int, int]] = Field(default_factory=list, description="(i, j): result j against result i "
                                         "too (an eval's `vs`)")


class Result(StageResult):
    metric: str
    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    png: str | None = None
    md: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"png": self.png, "md": self.md, "rows": [{k: r[k] for k in ("name", "mean")} for r in self.rows]}

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        return "; ".join(f"{r['name']} {r['mean']:.3f}" for r in s.get("rows") or [])


def resolve(cfg: Config) -> Config:
    return cfg


def up_to_date(cfg: Config) -> bool:
    return chart_path(cfg.png).exists() and (cfg.md is None or Path(cfg.md).exists())


def estimate(cfg: Config, ctx: EstimateContext) -> Estimate:
    return Estimate(what=f"{len(cfg.files)} results on {cfg.metric}, each against the first -> {cfg.png}")


def run(cfg: Config, ctx: RunContext = DIRECT) -> Result:
    return compare(cfg.files, cfg.png, cfg.metric, cfg.md, cfg.pairs)


def load_result(path: str, metric: str = "pass@1") -> dict[str, Any]:
    """An eval result, checked where a comparison reads it: a one-line error names the file and the field."""
    p = Path(path)
    if not p.exists():
        raise FactoryError(f"{p}: no such eval result")
    if p.is_dir():
        raise FactoryError(f"{p}: is a directory, not an eval result (name its <label>-<benchmark>.json)")
    try:
        result = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FactoryError(f"{p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FactoryError(f"{p}: cannot read the eval result ({type(e).__name__})") from None
    if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict) \
            or not isinstance(result.get("problems"), list):
        raise FactoryError(f"{p}: not a `factory eval` result (no metrics/problems)")
    _check_metric(p, result, metric)
    return result


def _named(path: str, result: dict[str, Any]) -> dict[str, Any]:
    for key in ("label", "benchmark"):
        if not isinstance(result.get(key), str):
            raise FactoryError(f"{path}: field '{key}' should be text")
    return result


def _check_metric(p: Path, result: dict[str, Any], metric: str) -> None:
    """The metric a comparison reads: a number in [0, 1] overall and for each problem, and some problems."""
    if not result["problems"]:
        raise FactoryError(f"{p}: no problems were scored: nothing to compare")
    m = result["metrics"].get(metric)
    if m is None:
        return  # said by the comparison, which names the result
    mean = m.get("mean") if isinstance(m, dict) else None
    if not _a_share(mean):
        raise FactoryError(f"{p}: field 'metrics.{metric}.mean' should be a number between 0 and 1, got {mean!r}")
    for i, q in enumerate(result["problems"]):
        value = (q.get("metrics") or {}).get(metric) if isinstance(q, dict) else None
        if not isinstance(q, dict) or "prompt_id" not in q or (value is not None and not _a_share(value)):
            raise FactoryError(f"{p}: field 'problems[{i}]': expected a prompt_id and metrics.{metric} between 0 "
                               f"and 1")


def _a_share(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1  # NaN fails both


def chart_path(png: str) -> Path:
    """Where the chart goes: the file named (.png), or DIR/compare.png for a directory; checked before any
    result is read, so a bad path costs nothing."""
    path = Path(png)
    if path.is_dir():
        path = path / "compare.png"
    elif path.suffix.lower() != ".png":
        raise FactoryError(f"--png {png}: the chart is a PNG file: name it NAME.png (or a directory)")
    existing = next((d for d in path.parents if d.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise FactoryError(f"--png {png}: cannot write the chart there ({existing} is not a writable directory)")
    return path


def compare(paths: list[str], png: str | None = None, metric: str = "pass@1", md: str | None = None,
            pairs: list[tuple[int, int]] | None = None) -> Result:
    """Every result against the first; `pairs` (i, j): result j against result i too (an RL arm against its
    control). The Markdown has a table per metric the results share: `metric`, and lenient pass@1 where scored."""
    if len(paths) < 2:
        raise FactoryError("--compare needs at least two result files")
    chart = chart_path(png) if png else None
    results = [_named(p, load_result(p, metric)) for p in paths]
    benchmarks = sorted({r["benchmark"] for r in results})
    if len(benchmarks) > 1:
        console.print(f"[yellow]warning[/]: these results are on different benchmarks ({', '.join(benchmarks)}): "
                      "their differences compare different problems, unpaired")
    names = _names(results)
    out = _comparison(results, names, metric, pairs or [])
    _print(out)
    if chart:
        _plot(out["rows"], metric, chart)
        out["png"] = str(chart)
        console.print(f"chart: {chart}")
    if md:
        from ..core.redact import redact_text

        text = markdown(out, results)
        if metric == "pass@1" and all(LENIENT in r["metrics"] for r in results):
            text += "\nScored leniently (an answer without \\boxed{} counts by its last number):\n\n" + markdown(
                _comparison(results, names, LENIENT, pairs or []), results, footer=False)
        if all(TOKENS_PER_CORRECT in r["metrics"] for r in results):
            text += ("\nMean completion tokens of a correct answer (per problem, paired over the problems both "
                     "solved; lower is more concise):\n\n" + markdown(
                         _comparison(results, names, TOKENS_PER_CORRECT, pairs or []), results, footer=False))
        Path(md).write_text(redact_text(text))
        out["md"] = md
    return Result(**out)


def _comparison(results: list[dict[str, Any]], names: list[str], metric: str,
                pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Each result against the first, and each pair (i, j): result j against result i, on one metric."""
    return {"metric": metric, "rows": _rows(results, names, metric),
            "pairs": [{"a": names[i], "b": names[j], **difference(_per_problem(results[i], metric),
                                                                  _per_problem(results[j], metric), metric)}
                      for i, j in pairs]}


def _rows(results: list[dict[str, Any]], names: list[str], metric: str) -> list[dict[str, Any]]:
    base = _per_problem(results[0], metric)
    rows = []
    for name, r in zip(names, results):
        m = r["metrics"].get(metric)
        if m is None:
            raise FactoryError(f"{name}: the result has no {metric}")
        rows.append({"name": name, "benchmark": r["benchmark"], "mean": m["mean"], "ci95": m["ci95"],
                     "vs_first": None if r is results[0] else difference(base, _per_problem(r, metric), metric)})
    return rows


def markdown(out: dict[str, Any], results: list[dict[str, Any]], footer: bool = True) -> str:
    """The comparison as a Markdown table (the README's quickstart table is this file, as the run wrote it)."""
    metric = out["metric"]
    lines = [f"| eval | model | {metric} (95% CI) | difference vs {out['rows'][0]['name'].split(' / ')[0]} "
             "(95% CI, p) |", "|---|---|---|---|"]
    for row, r in zip(out["rows"], results):
        ci = "" if row["ci95"] is None else f" ± {row['ci95']:.3f}"
        lines.append(f"| {row['name'].split(' / ')[0]} | `{Path(str(r.get('model', '?'))).name}` | "
                     f"{row['mean']:.3f}{ci} | {_cell(row['vs_first'])} |")
    for d in out.get("pairs") or []:
        b, a = d["b"].split(" / ")[0], d["a"].split(" / ")[0]
        lines += ["", f"{b} vs {a}: {_cell(d)}: {_pair_verdict(d, b, a)}."]
    if footer:
        s = results[0].get("settings", {}).get("sampling", {})
        m = results[0].get("metrics", {})
        lines.append("")
        lines.append(f"{results[0]['benchmark']}: {m.get('problems', '?')} held-out problems × {s.get('n', '?')} "
                     f"samples, T={s.get('temperature')}, top_p={s.get('top_p')}, max_tokens={s.get('max_tokens')}.")
    return "\n".join(lines) + "\n"


def _cell(d: dict[str, Any] | None) -> str:
    if d is None:
        return "reference"
    if d["ci95"] is None:
        return f"{d['delta']:+.3f}"
    return (f"**{d['delta']:+.3f}** [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], p = {d['p_value']:.2g}"
            + (f", paired over {d['n']} problems" if d["paired"] else ", unpaired"))


def _pair_verdict(d: dict[str, Any], b: str, a: str) -> str:
    """The sentence a reader looks for (an RL arm against its control: did the rewards' information help?)."""
    if d["ci95"] is None:
        return "too few problems to tell"
    if not d["significant"]:
        return f"within the noise, so no difference between {b} and {a} is shown"
    if d.get("metric") == TOKENS_PER_CORRECT:
        return f"{b}'s correct answers are {'longer' if d['delta'] > 0 else 'shorter'} than {a}'s, larger than the noise"
    return f"{b} is {'better' if d['delta'] > 0 else 'worse'} than {a}, larger than the noise"


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
    how = f"paired over {d['n']} problems" if d["paired"] else "unpaired"
    return (f"{d['delta']:+.3f}, 95% CI [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], p = {d['p_value']:.2g} "
            f"({how}): {word}")


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
    for d in out.get("pairs") or []:
        console.print(f"{d['b']} vs {d['a']}: {_verdict(d)}", soft_wrap=True, highlight=False)


def _plot(rows: list[dict[str, Any]], metric: str, png: Path) -> None:
    """Left: each result with its 95% CI. Right: each result minus the first, with the CI of the difference
    (paired where they share problems); a bar whose interval clears zero is a real difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(4, 1.6 * len(rows))
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(2 * width, 3.8), gridspec_kw={"width_ratios": [len(rows), len(rows)]})
    errs = [r["ci95"] or 0 for r in rows]
    ax.bar(range(len(rows)), [r["mean"] for r in rows], yerr=errs, capsize=6, color="#4c72b0")
    ax.set_xticks(range(len(rows)), [r["name"].replace(" / ", "\n") for r in rows], fontsize=8)
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_ylim(0, max(1.0, max(r["mean"] + e for r, e in zip(rows, errs))))
    ax.set_title("factory eval")
    diffs = [r for r in rows[1:] if r["vs_first"] is not None]
    for i, r in enumerate(diffs):
        d = r["vs_first"]
        low, high = (d["ci_low"], d["ci_high"]) if d["ci95"] is not None else (d["delta"], d["delta"])
        color = "#55a868" if d["significant"] and d["delta"] > 0 else "#c44e52" if d["significant"] else "#8c8c8c"
        dx.bar(i, d["delta"], color=color)
        dx.errorbar(i, d["delta"], yerr=[[d["delta"] - low], [high - d["delta"]]], color="black", capsize=6)
        p = "" if d["p_value"] is None else f"p={d['p_value']:.2g}"
        dx.annotate(p, (i, high), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    dx.axhline(0, color="black", linewidth=0.8)
    dx.margins(y=0.15)
    dx.set_xticks(range(len(diffs)), [r["name"].split(" / ")[0] + "\n− " + rows[0]["name"].split(" / ")[0]
                                      for r in diffs], fontsize=8)
    dx.set_ylabel(f"difference in {metric} (95% CI)")
    dx.set_title("vs the first (paired where problems are shared)", fontsize=9)
    fig.tight_layout()
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=120, metadata={"Software": None})
    except OSError as e:
        raise FactoryError(f"{png}: cannot write the chart ({e.strerror or type(e).__name__})") from None
    finally:
        plt.close(fig)
