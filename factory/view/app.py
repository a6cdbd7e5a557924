"""`factory view RUN_DIR`: a local, read-only web app over a run: the funnel, a table of traces, one trace with
its verdicts beside its prompt's other samples, and the evals.

Flask with Jinja2 templates, rendered on the server; no JavaScript and nothing to build. Every value from a
trace is untrusted model output: it reaches the page only through Jinja2's autoescaping (no `|safe` anywhere),
and links are built by `url_for` from our own routes, never from trace text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
from flask import Flask, abort, render_template, request, send_file, url_for

from ..config.stages import ViewConfig
from ..core.errors import FactoryError, first_line
from .data import Query, RunData
from .pairs import PairsData

PAGE = 50


def create_app(run_dir: str | Path) -> Flask:
    data, pairs = RunData(run_dir), PairsData(run_dir)
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    app.jinja_env.autoescape = True  # also for templates not named .html: every value is escaped
    app.config["RUN_DIR"] = str(run_dir)

    _show_unreadable_files(app, str(run_dir))

    @app.get("/")
    def index() -> str:
        stats = data.stats()
        adaptive = data.adaptive()
        return render_template("index.html", run=str(run_dir), stats=stats, funnel=funnel_rows(stats),
                               reasons=reason_rows(stats), evals=data.evals(), adaptive=adaptive,
                               ablation=data.ablation(), pairs=pairs.stats(),
                               bought=histogram_rows(adaptive, "samples_per_prompt"),
                               verified=histogram_rows(adaptive, "verified_per_prompt"))

    @app.get("/traces")
    def traces() -> str:
        query = Query.from_args(request.args)
        rows, total = data.page(query, PAGE)  # a page past the end (a hand-edited URL) is the last one
        pages = max(1, math.ceil(total / PAGE))
        return render_template("traces.html", run=str(run_dir), rows=rows, total=total, query=query,
                               pages=pages, choices=data.choices(), filtered=data.filtered,
                               prev_url=url_for("traces", **query.params(page=query.page - 1))
                               if query.page > 1 else None,
                               next_url=url_for("traces", **query.params(page=query.page + 1))
                               if query.page < pages else None)

    @app.get("/trace/<prompt_id>/<int:sample_index>")
    def trace(prompt_id: str, sample_index: int) -> str:
        samples = data.prompt_samples(prompt_id)
        this = next((s for s in samples if s["sample_index"] == sample_index), None)
        if this is None:
            abort(404)
        return render_template("trace.html", run=str(run_dir), t=this, samples=samples)

    @app.get("/pairs")
    def pairs_page() -> str:
        kind = request.args.get("kind", "")
        page = request.args.get("page", "1")
        rows, total, shown = pairs.page(kind, int(page) if page.isdigit() else 1, PAGE)
        pages = max(1, math.ceil(total / PAGE))
        link = lambda n: url_for("pairs_page", **({"kind": kind} if kind else {}), page=n)  # noqa: E731
        return render_template("pairs.html", run=str(run_dir), rows=rows, total=total, kind=kind,
                               kinds=sorted((pairs.stats() or {}).get("by_kind", {})), page=shown, pages=pages,
                               prev_url=link(shown - 1) if shown > 1 else None,
                               next_url=link(shown + 1) if shown < pages else None)

    @app.get("/pair/<int:index>")
    def pair_page(index: int) -> str:
        pair = pairs.pair(index)
        if pair is None:
            abort(404)
        return render_template("pair.html", run=str(run_dir), p=pair)

    @app.get("/evals/<name>")
    def eval_page(name: str) -> str:
        result = data.eval_result(name)
        if result is None:
            abort(404)
        return render_template("eval.html", run=str(run_dir), name=name, r=result,
                               has_compare=data.compare_png() is not None)

    @app.get("/ablation.png")
    def ablation_png() -> Any:
        return _png(data.ablation_png())

    @app.get("/evals/compare.png")
    def compare_png() -> Any:
        return _png(data.compare_png())

    return app


def _png(path: Path | None) -> Any:
    """A figure the run wrote, or 404 when it has none."""
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/png")


def _show_unreadable_files(app: Flask, run: str) -> None:
    """A shard or statistics file damaged after the viewer started: a page that says which and why."""
    def unreadable(e: Exception) -> tuple[str, int]:
        return render_template("error.html", run=run, message=first_line(e, 300)), 500

    for kind in (FactoryError, pl.exceptions.PolarsError, OSError):
        app.register_error_handler(kind, unreadable)


def funnel_rows(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    """In, then what each filter left, for the funnel chart: bar widths in percent of the input."""
    if not stats:
        return []
    funnel = stats["funnel"]
    total, remaining = max(funnel["in"], 1), funnel["in"]
    rows = [{"name": "in", "rows": remaining, "rejected": 0, "width": 100.0}]
    order = stats.get("order") or list(funnel["rejected_by"])  # the run's order, as the card shows it
    for name in order:
        rejected = funnel["rejected_by"].get(name, 0)
        remaining -= rejected
        rows.append({"name": name, "rows": remaining, "rejected": rejected, "width": 100.0 * remaining / total})
    return rows


def histogram_rows(adaptive: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """An adaptive histogram (value -> prompts) as bar rows, in value order."""
    if not adaptive or not adaptive.get(key):
        return []
    hist = {int(k): v for k, v in adaptive[key].items()}
    top = max(hist.values())
    return [{"value": k, "prompts": v, "width": 100 * v / top} for k, v in sorted(hist.items())]


def reason_rows(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not stats or not stats.get("reasons"):
        return []
    top = max(stats["reasons"].values())
    return [{"reason": k, "filter": k.split(":")[0], "rows": v, "width": 100.0 * v / top}
            for k, v in list(stats["reasons"].items())[:20]]


def run(cfg: ViewConfig) -> None:
    from werkzeug.serving import run_simple

    if not Path(cfg.run_dir).is_dir():
        raise FactoryError(f"{cfg.run_dir}: no such run directory")
    app = create_app(cfg.run_dir)
    print(f"factory view: http://{cfg.host}:{cfg.port}/ (read-only; Ctrl-C stops it)")
    run_simple(cfg.host, cfg.port, app, threaded=True)
