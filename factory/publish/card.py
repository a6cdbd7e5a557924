"""The dataset card: Hub front matter (configs, features, licence...), the teacher, the sampling, the template, the
filter funnel with each filter's parameters, pass rates, lengths, examples and lineage; plots beside it."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import FactoryError
from ..core.jsonfiles import read_json, read_json_object
from ..core.redact import redact_text
from ..sources.spec import parse_source
from ..storage.rundir import RunDir, resolved_section
from ..storage.shards import iter_batches, read_manifest, shard_files
from . import plots

# data_cards/ is the template's source, the one to edit; this link to it travels in the wheel as the file itself.
TEMPLATES = Path(__file__).parent / "templates"
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M")]


def size_category(rows: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if rows < limit), "n>10M")


def load_run(run_dir: Path) -> dict[str, Any]:
    rd = RunDir(run_dir)
    if not rd.filter_stats.exists():
        raise FactoryError(f"{run_dir}: no filtered output yet (run `factory filter {run_dir}` first)")
    resolved_path = rd.resolved
    resolved = yaml.safe_load(resolved_path.read_text()) if resolved_path.exists() else {}
    # a pipeline's named instances (gen, keep, ...) wrote these sections under their own names
    traces_fp = read_manifest(rd.traces).get("fingerprint") if (rd.traces / "manifest.json").exists() else None
    for kind, fp in (("generate", traces_fp), ("filter", None), ("distill", None)):
        section = resolved_section(resolved, kind, fp)
        if section is not None:
            resolved[kind] = section
    if "generate" not in resolved or "filter" not in resolved:
        raise FactoryError(f"{resolved_path}: the generate and filter settings are missing; the card's lineage "
                           "would be empty (rerun the stages with this version)")
    pairs = (rd.pairs / "stats.json").exists()
    return {"stats": read_json_object(rd.filter_stats, "filter statistics", {"funnel": dict}), "resolved": resolved,
            "generation": read_json(rd.generate_stats, "generation statistics") if rd.generate_stats.exists() else None,
            "kept_rows": read_manifest(rd.kept)["rows"], "rejected_rows": read_manifest(rd.rejected)["rows"],
            "pairs": read_json_object(rd.pairs / "stats.json", "pairs statistics", {"by_kind": dict, "unpaired": dict})
            if pairs else None, "pair_rows": read_manifest(rd.pairs)["rows"] if pairs else 0}


def front_matter(run: dict[str, Any], include_rejected: bool, license_: str | None, pretty_name: str) -> str:
    import datasets
    from huggingface_hub import DatasetCardData

    from ..storage.records import FILTERED_SCHEMA, PAIRS_SCHEMA

    traces = partial(hub_features, datasets.Features.from_arrow_schema(FILTERED_SCHEMA))
    splits = [("default", "kept", run["kept_rows"], traces)]
    if include_rejected:
        splits.append(("rejected", "rejected", run["rejected_rows"], traces))
    if run.get("pairs"):  # the preference pairs: a config of their own, `load_dataset(repo, "pairs")`
        splits.append(("pairs", "pairs", run["pair_rows"],
                       partial(hub_features, datasets.Features.from_arrow_schema(PAIRS_SCHEMA))))
    language = run["resolved"]["filter"]["config"].get("language", {}).get("target", "en")
    data = DatasetCardData(
        license=license_ or _license(run), language=[language], pretty_name=pretty_name,
        task_categories=["text-generation", "question-answering"],
        size_categories=[size_category(run["kept_rows"])],
        tags=["reasoning", "chain-of-thought", "distillation", "synthetic", "deepseek-r1", "r1-factory"],
        configs=[{"config_name": name, "data_files": [{"split": "train", "path": f"data/{d}/*.parquet"}]}
                 for name, d, _, _ in splits],
        dataset_info=[{"config_name": name, "features": features(), "splits": [{"name": "train", "num_examples": n}]}
                      for name, _, n, features in splits])
    return data.to_yaml()


def hub_features(features) -> list[dict[str, Any]]:
    """The front matter's `features` list (the Hub's YAML form) from the public `Features.to_dict()`: {name, dtype}
    per plain column, {name, list: [{name, dtype}...]} for a list of records (a pair's messages); any other type
    would be a new column type that this must learn."""
    out: list[dict[str, Any]] = []
    for name, spec in features.to_dict().items():
        fields = spec.get("feature") if spec.get("_type") == "List" else None
        if isinstance(fields, dict) and all(isinstance(f, dict) and f.get("_type") == "Value" for f in fields.values()):
            out.append({"name": name, "list": [{"name": k, "dtype": f["dtype"]} for k, f in fields.items()]})
        elif spec.get("_type") == "Value":
            out.append({"name": name, "dtype": spec["dtype"]})
        else:
            raise FactoryError(f"card: column {name!r} is a {spec.get('_type')}, not a plain value or a list of records")
    return out


def _license(run: dict[str, Any]) -> str:
    return parse_source(run["resolved"]["generate"]["config"]["prompts"]["source"]).license_id


def render(run_dir: Path, out_dir: Path, include_rejected: bool = True, repo_id: str | None = None,
           license_: str | None = None, pretty_name: str | None = None, example_chars: int = 800,
           include_pairs: bool = True) -> Path:
    """Writes out_dir/README.md and out_dir/assets/*.png; returns the README's path. The pairs are described
    where `factory pairs` made them (and include_pairs)."""
    import jinja2

    run = load_run(run_dir)
    if not include_pairs:
        run["pairs"] = None
    name = pretty_name or f"{run_dir.name} reasoning traces"
    context = _context(run_dir, run, include_rejected, repo_id, example_chars)
    context["pretty_name"] = name
    _plots(run_dir, run, out_dir / "assets")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True,
                             autoescape=False, undefined=jinja2.StrictUndefined)
    body = env.get_template("dataset_card.md.j2").render(**context)
    readme = out_dir / "README.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = readme.with_suffix(".md.tmp")
    text = f"---\n{front_matter(run, include_rejected, license_, name)}\n---\n\n{body}"
    tmp.write_text(redact_text(text))  # the card is published: nothing secret-looking survives
    tmp.replace(readme)
    return readme


def _context(run_dir: Path, run: dict[str, Any], include_rejected: bool, repo_id: str | None,
             example_chars: int) -> dict[str, Any]:
    gen = run["resolved"]["generate"]
    filt = run["resolved"]["filter"]
    stats = run["stats"]
    return {
        "teacher": gen["config"]["teacher"], "sampling": gen["config"]["sampling"],
        "template": gen["config"]["template"], "generation": run["generation"], "funnel": stats["funnel"],
        "adaptive": (run["generation"] or {}).get("adaptive"), "by_teacher": stats.get("by_teacher") or {},
        "judge": stats.get("judge"), "judge_model": ((filt["config"].get("judge") or {}).get("teacher") or {}).get("model"),
        "sources": _sources(stats, gen["config"]["prompts"]["source"]),
        "filters": _filter_rows(stats, filt["config"]),
        "reasons": sorted(stats["reasons"].items(), key=lambda kv: (-kv[1], kv[0])),
        "pass_rate": stats["pass_rate"],
        "pass_rates": [("task", k, v) for k, v in sorted(stats["pass_rate"]["by_task"].items())]
        + [("source", k, v) for k, v in sorted(stats["pass_rate"]["by_source"].items())],
        "tokens": [(k, stats["tokens"][k]) for k in ("kept", "rejected") if stats["tokens"].get(k)],
        "examples": _examples(run_dir, stats, example_chars),
        "stages": [{"name": s, "fingerprint": run["resolved"][s]["fingerprint"],
                    "command": run["resolved"][s].get("command")} for s in ("generate", "filter")],
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(run["resolved"].get("packages", {}).items())),
        "include_rejected": include_rejected, "repo_id": repo_id or "ORG/NAME",
        "mixture": ((run["resolved"].get("distill") or {}).get("summary") or {}).get("mixture"),
        "pairs": _pairs(run["pairs"]),
    }


def _pairs(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pairs section: per kind, the pairs and the prompts without one (by why); the rejected side's reasons."""
    if not stats:
        return None
    kinds = [{"kind": k, "pairs": n, "unpaired": ", ".join(f"{why}: {c}" for why, c in
                                                            sorted((stats["unpaired"].get(k) or {}).items())) or "-"}
             for k, n in stats["by_kind"].items()]
    reasons = sorted((stats.get("rejected_reasons") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return {"total": stats.get("pairs", sum(stats["by_kind"].values())), "kinds": kinds, "reasons": reasons,
            "median_ratio": stats.get("median_length_ratio")}


def _sources(stats: dict[str, Any], spec: str) -> list[dict[str, str]]:
    tasks = sorted(stats["pass_rate"]["by_task"]) or ["-"]
    return [{"source": spec, "task": ", ".join(tasks), "license": parse_source(spec).license}]


def _filter_rows(stats: dict[str, Any], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    remaining = stats["funnel"]["in"]
    rows = []
    for name in cfg["order"]:
        params = cfg.get(name, {})
        if not params.get("enabled", True) or params.get("mode") == "off":  # the judge is on by its mode
            continue
        rejected = stats["funnel"]["rejected_by"].get(name, 0)
        remaining -= rejected
        shown = ", ".join(f"{k}={_param(v)}" for k, v in params.items() if k != "enabled")
        rows.append({"name": name, "rejected": rejected, "failed": stats["failed_any"].get(name, 0),
                     "skipped": (stats.get("skipped") or {}).get(name, 0),
                     "remaining": remaining, "params": f"`{shown}`" if shown else ""})
    return rows


def _param(value: Any) -> Any:
    """A model's settings as ENGINE:MODEL (the judge's teacher), anything else as it is."""
    if isinstance(value, dict) and "model" in value and "engine" in value:
        return f"{value['engine']}:{value['model']}"
    return value


def _clip(text: str, limit: int) -> str:
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half].rstrip()}\n[... {len(text) - limit} characters ...]\n{text[-half:].lstrip()}"


def _examples(run_dir: Path, stats: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """One kept row, then one rejected row for each of the three filters that rejected the most."""
    columns = ["problem", "reasoning", "answer", "reject_reason", "verdicts"]
    picked: list[tuple[str, dict]] = []
    for batch in iter_batches(RunDir(run_dir).kept, columns=columns):
        if batch.num_rows:
            picked.append(("Kept", batch.slice(0, 1).to_pylist()[0]))
            break
    by = stats["funnel"]["rejected_by"]
    wanted = [f for f, n in sorted(by.items(), key=lambda kv: (-kv[1], kv[0])) if n][:3]
    found: dict[str, dict] = {}
    for batch in iter_batches(RunDir(run_dir).rejected, columns=columns):
        for row in batch.to_pylist():
            if row["reject_reason"] in wanted and row["reject_reason"] not in found:
                found[row["reject_reason"]] = row
        if len(found) == len(wanted):
            break
    for f in wanted:
        if f in found:
            detail = (json.loads(found[f]["verdicts"] or "{}").get(f) or {}).get("reason")
            picked.append((f"Rejected by {f}" + (f" ({detail})" if detail else ""), found[f]))
    return [{"title": title, "problem": _clip(row["problem"], limit // 2).replace("\n", " "),
             "reasoning": _clip(row["reasoning"], limit), "reasoning_chars": len(row["reasoning"] or ""),
             "answer": _clip(row["answer"], limit // 4).replace("\n", " ")}
            for title, row in picked]


def _plots(run_dir: Path, run: dict[str, Any], assets: Path) -> None:
    """From the shards' small columns only (polars, lazily): the reasoning is never read."""
    import polars as pl

    from ..filters.stats import prompt_pass_rates, scan_filtered, with_tokens

    rows = with_tokens(scan_filtered(RunDir(run_dir).filtered).select(
        "prompt_id", "kept", "verdicts", "completion_tokens", "pass_rate")).select("kept", "tokens").collect()
    tokens = {"kept": rows.filter(pl.col("kept"))["tokens"].drop_nulls().to_list(),
              "rejected": rows.filter(~pl.col("kept"))["tokens"].drop_nulls().to_list()}
    rates = [rate for _, rate in sorted(prompt_pass_rates(RunDir(run_dir).filtered).items())]
    plots.token_histogram(tokens["kept"], tokens["rejected"], assets / "tokens.png")
    stats = run["stats"]
    stages = [("input", stats["funnel"]["in"])]
    stages += [(f["name"], f["remaining"]) for f in _filter_rows(stats, run["resolved"]["filter"]["config"])]
    plots.funnel(stages, assets / "funnel.png")
    plots.pass_rates(rates, assets / "pass_rate.png")
    adaptive = (run["generation"] or {}).get("adaptive")
    if adaptive:
        plots.adaptive(adaptive["samples_per_prompt"], adaptive["verified_per_prompt"], assets / "adaptive.png")
    if run.get("pairs"):
        pairs = pl.read_parquet(shard_files(RunDir(run_dir).pairs), columns=["kind", "chosen_tokens", "rejected_tokens"])
        ratios = pairs.filter(pl.col("rejected_tokens") > 0).with_columns(
            ratio=pl.col("chosen_tokens") / pl.col("rejected_tokens"))
        plots.pair_ratios({k: ratios.filter(pl.col("kind") == k)["ratio"].to_list()
                           for k in sorted(ratios["kind"].unique().to_list())}, assets / "pair_ratio.png")
