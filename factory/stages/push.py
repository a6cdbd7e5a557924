"""`factory push RUN_DIR --repo ORG/NAME`: the card, its plots and the kept (and, asked for, rejected) shards to a
Hub dataset repo. Everything is checked (filtered output, repo id, token, ownership) before a byte is sent.

Prefer `datasets`? `Dataset.from_parquet("RUN_DIR/filtered/kept/*.parquet").push_to_hub("ORG/NAME")` works too,
without the card.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.tree import Tree

from ..config.stages import PushConfig
from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.results import StageResult
from ..publish import hub
from ..publish.card import load_run, render
from ..publish.hub import STAGING_MARK
from ..storage.rundir import RunDir
from ..storage.shards import check_shards

console = Console(stderr=True)


def check_staging(run_dir: Path, staging: Path) -> None:
    """A staging folder is replaced on every push: refuse one that holds anything factory did not stage there
    (a folder without the mark), the run directory or a folder above it, and a place inside the run's own
    outputs; nothing is removed before this passes."""
    run, where = run_dir.resolve(), staging.resolve()
    if where == run or run.is_relative_to(where):
        raise FactoryError(f"{staging}: the staging folder would hold the run directory {run_dir}, which a push "
                           "replaces whole; choose a folder of its own (default RUN_DIR/push)")
    if where.is_relative_to(run) and where.relative_to(run).parts[0] != RunDir(run).push.name:
        raise FactoryError(f"{staging}: the staging folder is inside the run's own outputs "
                           f"({where.relative_to(run).parts[0]}/); choose RUN_DIR/push or a folder outside the run")
    if where.exists() and (not where.is_dir() or (any(where.iterdir()) and not (where / STAGING_MARK).exists())):
        raise FactoryError(f"{staging}: exists and was not made by factory push (no {STAGING_MARK} in it): "
                           "nothing was removed; choose another staging folder or empty this one yourself")


def stage(cfg: PushConfig, staging: Path) -> list[Path]:
    """The exact folder that is uploaded: README.md, assets/*.png, data/kept/*.parquet (+ data/rejected/, and
    data/pairs/ where `factory pairs` made them)."""
    rd = RunDir(cfg.run_dir)
    check_staging(rd.root, staging)
    pairs = cfg.include_pairs and (rd.pairs / "stats.json").exists()
    for shards in [rd.kept, *([rd.rejected] if cfg.include_rejected else []), *([rd.pairs] if pairs else [])]:
        check_shards(shards)  # a damaged shard stops the push before anything is staged
    shutil.rmtree(staging, ignore_errors=True)  # factory's own staging (marked), or an empty folder
    staging.mkdir(parents=True)
    (staging / STAGING_MARK).write_text("staged by factory push; replaced whole by the next push\n")
    try:
        render(rd.root, staging, cfg.include_rejected, cfg.repo, cfg.license, cfg.pretty_name, cfg.example_chars,
               pairs)
        max_bytes = cfg.max_shard_mb * 1024 * 1024
        hub.stage_shards(rd.kept, staging / "data" / "kept", max_bytes)
        if cfg.include_rejected:
            hub.stage_shards(rd.rejected, staging / "data" / "rejected", max_bytes)
        if pairs:
            hub.stage_shards(rd.pairs, staging / "data" / "pairs", max_bytes)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never a half-staged folder that looks like a push
        raise
    return sorted(p for p in staging.rglob("*") if p.is_file() and p.name != STAGING_MARK)


def _show(staging: Path, files: list[Path]) -> None:
    tree = Tree(f"[bold]{staging}")
    for p in files:
        tree.add(f"{p.relative_to(staging).as_posix()}  ({p.stat().st_size / 1e6:.2f} MB)")
    console.print(tree)


Config = PushConfig  # `factory push`: a command, not a pipeline stage (no KIND)
CLI_ARGUMENT = "run_dir"  # `factory push RUN_DIR --repo ORG/NAME [--private] [--dry-run] [--include-rejected]`
CLI_OPTIONS = ("repo", "private", "dry_run", "include_rejected", "include_pairs")
INTERRUPTED = "what was committed is on the Hub; rerun to go on (committed files are skipped)"


class Result(StageResult):
    """What a push did (or, with dry_run, would do)."""

    dry_run: bool = False
    url: str | None = None
    staging: str | None = None
    files: int = 0
    uploaded: int | None = None
    skipped: int | None = None
    deleted: list[str] | None = None  # stale files removed (a dry run: that would be; None: not known)
    commits: int | None = None


def run(cfg: PushConfig, ctx: RunContext = DIRECT) -> Result:
    from huggingface_hub import HfApi

    rd = RunDir(cfg.run_dir)
    load_run(rd.root)  # no filtered output: stop before anything else
    hub.check_repo_id(cfg.repo)
    staging = Path(cfg.staging or rd.push)
    if cfg.dry_run:
        return _dry_run(cfg, staging)
    api = HfApi(token=hub.token())
    user = hub.check_owner(api, cfg.repo)
    files = stage(cfg, staging)
    _show(staging, files)
    try:
        report = hub.upload(api, cfg.repo, staging, cfg.private, cfg.commit_mb * 1024 * 1024)
    except Exception as e:
        if not hub.unreachable(e):
            raise
        raise FactoryError(f"{api.endpoint}: the Hub stopped answering ({type(e).__name__}); what was committed "
                           "is there: rerun to go on (committed files are skipped)") from None
    console.print(f"pushed as {user}: {report['uploaded']} files uploaded, {report['skipped']} already there, "
                  f"{len(report['deleted'])} stale files removed, {report['commits']} commits -> {report['url']}")
    return Result(**report)


def _dry_run(cfg: PushConfig, staging: Path) -> Result:
    """Stages and shows; with a token, also lists the Hub files the push would delete. Sends nothing."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    files = stage(cfg, staging)
    _show(staging, files)
    report: dict[str, Any] = {"dry_run": True, "staging": str(staging), "files": len(files), "deleted": None}
    token = get_token()
    if token:
        api = HfApi(token=token)
        try:
            api.whoami()  # one quick call first: the listing retries for half a minute where no Hub answers
            report["deleted"] = hub.stale(hub.remote_files(api, cfg.repo), staging)
        except Exception as e:
            if not (isinstance(e, HfHubHTTPError) or hub.unreachable(e)):
                raise
            console.print(f"could not list {cfg.repo} at {api.endpoint} ({type(e).__name__}): stale files not "
                          "checked")
    if report["deleted"] is None:
        console.print("no Hub listing (no token or no answer): files the push would delete are not known")
    else:
        for path in report["deleted"]:
            console.print(f"  would delete {path} (not in this run)")
    console.print(f"dry run: {len(files)} files would go to https://huggingface.co/datasets/{cfg.repo}, "
                  f"{len(report['deleted'] or [])} stale files would be deleted; nothing was uploaded")
    return Result(**report)
