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

from .. import hub
from ..cards import load_run, render
from ..config import PushConfig
from ..rundir import RunDir

console = Console(stderr=True)


def stage(cfg: PushConfig, staging: Path) -> list[Path]:
    """The exact folder that is uploaded: README.md, assets/*.png, data/kept/*.parquet (+ data/rejected/)."""
    rd = RunDir(cfg.run_dir)
    shutil.rmtree(staging, ignore_errors=True)
    render(rd.root, staging, cfg.include_rejected, cfg.repo, cfg.license, cfg.pretty_name, cfg.example_chars)
    max_bytes = cfg.max_shard_mb * 1024 * 1024
    hub.stage_shards(rd.kept, staging / "data" / "kept", max_bytes)
    if cfg.include_rejected:
        hub.stage_shards(rd.rejected, staging / "data" / "rejected", max_bytes)
    return sorted(p for p in staging.rglob("*") if p.is_file())


def _show(staging: Path, files: list[Path]) -> None:
    tree = Tree(f"[bold]{staging}")
    for p in files:
        tree.add(f"{p.relative_to(staging).as_posix()}  ({p.stat().st_size / 1e6:.2f} MB)")
    console.print(tree)


def run(cfg: PushConfig) -> dict[str, Any]:
    from huggingface_hub import HfApi

    rd = RunDir(cfg.run_dir)
    load_run(rd.root)  # no filtered output: stop before anything else
    hub.check_repo_id(cfg.repo)
    staging = Path(cfg.staging or rd.push)
    if cfg.dry_run:
        files = stage(cfg, staging)
        _show(staging, files)
        console.print(f"dry run: {len(files)} files would go to https://huggingface.co/datasets/{cfg.repo}; "
                      "nothing was uploaded")
        return {"dry_run": True, "staging": str(staging), "files": len(files)}
    api = HfApi(token=hub.token())
    user = hub.check_owner(api, cfg.repo)
    files = stage(cfg, staging)
    _show(staging, files)
    report = hub.upload(api, cfg.repo, staging, cfg.private, cfg.commit_mb * 1024 * 1024)
    console.print(f"pushed as {user}: {report['uploaded']} files uploaded, {report['skipped']} already there, "
                  f"{report['commits']} commits -> {report['url']}")
    return report
