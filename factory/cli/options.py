"""What every stage command shares: the config file, `--set`, the pipeline section, how the layers merge, and
how a run ends on Ctrl-C or SIGTERM."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config.loader import load_yaml, parse_overrides
from ..core.context import RunContext

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field: a.b=value (repeatable)")]
SectionOpt = Annotated[str | None, typer.Option("--section", hidden=True, help="The pipeline instance whose section "
                                                "of config.resolved.yaml this writes (set by the pipeline)")]


def run_context(cli: typer.Context, section: str | None) -> RunContext:
    """What the stage gets besides its config: the section it writes and the command line (main() hands it in)."""
    return RunContext(section=section, command=cli.obj)


def layers(config: str | None, flags: dict[str, Any], sets: list[str] | None) -> list[dict[str, Any]]:
    """Config file < command-line flags < --set overrides."""
    file_layer = load_yaml(config) if config else {}
    return [file_layer, flags, parse_overrides(sets or [])]


def put(d: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def interruptible(run: Any, cfg: Any, ctx: RunContext, kept: str) -> Any:
    """A stage's run(cfg, ctx); Ctrl-C or SIGTERM ends it with one line saying what was kept, and exit 130."""
    try:
        return run(cfg, ctx)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {kept}", err=True)
        raise typer.Exit(130) from None
