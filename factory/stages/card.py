"""`factory card RUN_DIR`: the dataset card (README.md with Hub front matter) and its plots in RUN_DIR/card."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..config.stages import CardConfig
from ..publish.card import render
from ..storage.rundir import RunDir

console = Console(stderr=True)


def run(cfg: CardConfig) -> Path:
    rd = RunDir(cfg.run_dir)
    readme = render(rd.root, Path(cfg.out or rd.card), cfg.include_rejected, cfg.repo_id, cfg.license,
                    cfg.pretty_name, cfg.example_chars)
    console.print(f"card: {readme} (plots in {readme.parent / 'assets'})")
    return readme
