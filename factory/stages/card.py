"""`factory card RUN_DIR`: the dataset card (README.md with Hub front matter) and its plots in RUN_DIR/card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ..config.stages import CardConfig
from ..core.context import DIRECT, RunContext
from ..core.results import StageResult
from ..publish.card import render
from ..storage.rundir import RunDir
from .estimates import Estimate, EstimateContext

console = Console(stderr=True)

KIND, ORDER = "card", 30
Config = CardConfig
CLI_ARGUMENT, CLI_OPTIONS = "run_dir", ("repo_id",)  # `factory card RUN_DIR [--repo-id ORG/NAME]`


class Result(StageResult):
    SUMMARY = ("card",)

    card: str  # the README.md written (its plots beside it, in assets/)

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        return s.get("card", "")


def readme_path(cfg: CardConfig) -> Path:
    return Path(cfg.out or RunDir(cfg.run_dir).card) / "README.md"


def resolve(cfg: CardConfig) -> CardConfig:
    return cfg


def up_to_date(cfg: CardConfig) -> bool:
    return readme_path(cfg).exists()


def estimate(cfg: CardConfig, ctx: EstimateContext) -> Estimate:
    return Estimate(what=str(readme_path(cfg)))


def run(cfg: CardConfig, ctx: RunContext = DIRECT) -> Result:
    rd = RunDir(cfg.run_dir)
    readme = render(rd.root, readme_path(cfg).parent, cfg.include_rejected, cfg.repo_id, cfg.license,
                    cfg.pretty_name, cfg.example_chars)
    console.print(f"card: {readme} (plots in {readme.parent / 'assets'})")
    return Result(card=str(readme))
