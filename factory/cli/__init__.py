"""The `factory` command: parses options, loads the config, calls the stage's `run(cfg)`. Nothing else."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from ..config.loader import build
from ..core.errors import FactoryError
from ..core.processes import sigterm_interrupts
from .options import ConfigOpt, SectionOpt, SetOpt, interruptible, layers, put, run_context
from .stages import StageGroup

app = typer.Typer(cls=StageGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The DeepSeek-R1 distillation recipe: teacher traces, rejection filters, SFT of students.")

@app.callback()
def _root() -> None:
    """The DeepSeek-R1 distillation recipe: teacher traces, rejection filters, SFT of students."""


@app.command()
def models(prepare: Annotated[bool, typer.Option(help="Convert the bundled models now (once)")] = False) -> None:
    """List the bundled models (aliases usable as --teacher ENGINE:ALIAS) and where they live."""
    from ..storage import models as m

    for alias, bundled in m.BUNDLED.items():
        path = m.prepare(bundled) if prepare else m.model_dir(alias)
        state = "ready" if m.is_prepared(alias) else "not prepared (factory models --prepare)"
        typer.echo(f"{alias}\t{bundled.hub_id}\t{path}\t{state}")


config_app = typer.Typer(no_args_is_help=True, help="Every configuration key: its type, default and meaning.")
app.add_typer(config_app, name="config")


@config_app.command("reference")
def config_reference(out: Annotated[str | None, typer.Option(help="Write it to this file")] = None) -> None:
    """Every stage's keys, types, defaults and help, as docs/config-reference.md (generated from the code)."""
    from pathlib import Path

    from ..pipeline.reference import markdown

    text = markdown()
    if out:
        Path(out).write_text(text)
    else:
        typer.echo(text, nl=False)


@config_app.command("show")
def config_show(pipeline: Annotated[str, typer.Argument(help="A pipeline file (pipelines/*.yaml)")],
                set_: SetOpt = None) -> None:
    """Every resolved value of every stage of a pipeline, and where it came from: --set, the file, the
    default, or derived by the loader (output folders, references to other stages)."""
    from ..pipeline.reference import show_pipeline

    typer.echo(show_pipeline(pipeline, set_ or []), nl=False)


ExecutorOpt = Annotated[str | None, typer.Option(help="local (default) or ray: run on a Ray cluster with Ray Data")]
RayAddressOpt = Annotated[str | None, typer.Option(help="With --executor ray: the cluster ('auto': the one this "
                                                   "machine is in); unset: start Ray on this machine")]


def _put_executor(flags: dict[str, Any], executor: str | None, ray_address: str | None) -> None:
    put(flags, "executor.kind", executor)
    put(flags, "executor.address", ray_address)  # without a kind: ray (ExecutorConfig)


@app.command()
def view(
    run_dir: Annotated[str, typer.Argument(help="Run directory to show")],
    port: Annotated[int | None, typer.Option(help="Port (default 8008)")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1: this machine only)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """A read-only trace viewer in the browser: the funnel, the traces and their verdicts, the evals."""
    from ..config.stages import ViewConfig
    from ..view import run as serve

    flags: dict[str, Any] = {"run_dir": run_dir}
    put(flags, "port", port)
    put(flags, "host", host)
    serve(build(ViewConfig, *layers(config, flags, set_), where=config or "view"))


@app.command("eval")
def eval_(
    cli: typer.Context,
    model: Annotated[str | None, typer.Option(help="Checkpoint directory, bundled alias, Hub id or served name")] = None,
    benchmark: Annotated[str | None, typer.Option(help="math500, aime24, aime25, gpqa-diamond, humaneval, "
                                                  "gym:TASK or FILE.jsonl")] = None,
    n: Annotated[int | None, typer.Option(help="Samples per problem")] = None,
    engine: Annotated[str | None, typer.Option(help="vllm, llamacpp, hf, openai or auto")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL (openai engine)")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most new tokens per sample")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N problems")] = None,
    out: Annotated[str | None, typer.Option(help="Results directory")] = None,
    compare: Annotated[list[str] | None, typer.Option(help="Compare result files instead (repeat, or list them "
                                                      "after --compare)")] = None,
    png: Annotated[str | None, typer.Option(help="With --compare: write the bar chart here")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
    files: Annotated[list[str] | None, typer.Argument(help="More result files for --compare")] = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    section: SectionOpt = None,
) -> None:
    """pass@1 (95% CI), pass@k and maj@k of a model on a benchmark; or --compare earlier results."""
    if compare:
        from ..stages.compare import compare as run_compare

        run_compare([*compare, *(files or [])], png or "eval/compare.png")
        return
    from ..stages import eval as stage

    flags: dict[str, Any] = {}
    for dotted, value in [("model", model), ("benchmark", benchmark), ("sampling.n", n), ("teacher.engine", engine),
                          ("teacher.base_url", base_url), ("sampling.max_tokens", max_tokens), ("limit", limit),
                          ("out", out), ("progress", None if progress else False)]:
        put(flags, dotted, value)
    _put_executor(flags, executor, ray_address)
    interruptible(stage.run, build(stage.Config, *layers(config, flags, set_), where=config or "eval"),
                   run_context(cli, section), "finished samples are cached; rerun the same command to resume")


@app.command("run")
def run_pipeline(
    cli: typer.Context,
    pipeline: Annotated[str, typer.Argument(help="Pipeline YAML (see pipelines/)")],
    from_: Annotated[str | None, typer.Option("--from", help="Rerun from this stage on")] = None,
    only: Annotated[str | None, typer.Option(help="Run this stage only")] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and print the plan (tokens, cost); run nothing")] = False,
    set_: SetOpt = None,
) -> None:
    """Run a pipeline's stages (generate, filter, card, distill, eval), skipping what is up to date."""
    from .. import pipeline as runner

    p = runner.load_pipeline(pipeline, set_)
    runner.check_flags(p, from_, only)
    if dry_run:
        runner.dry_run(p)
        return
    try:
        runner.run(p, start=from_, only=only, command=cli.obj)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: rerun `factory run {pipeline}` to resume where it stopped", err=True)
        raise typer.Exit(130) from None


@app.command("ablate")
def ablate(
    ablation: Annotated[str, typer.Argument(help="Ablation YAML: a base pipeline, decide_by and variants")],
    root: Annotated[str, typer.Option(help="Where the runs go: ROOT/NAME/VARIANT")] = "runs/ablate",
    dry_run: Annotated[bool, typer.Option(help="Validate every variant and print each run's plan; run nothing")]
    = False,
) -> None:
    """Run a base pipeline and its variants, then compare their students on the deciding eval."""
    from ..pipeline import ablate as runner
    from ..pipeline.ablation import load_ablation

    a = load_ablation(ablation, root)
    if dry_run:
        runner.dry_run(a)
        return
    try:
        runner.run(a)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: rerun `factory ablate {ablation}` to resume where it stopped", err=True)
        raise typer.Exit(130) from None


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI and returns its exit code: 1 for a FactoryError (one line), 2 for a usage error."""
    from ..storage.rundir import redacted_command

    command = redacted_command(["factory", *(sys.argv[1:] if argv is None else argv)])
    try:
        with sigterm_interrupts():  # a SIGTERM unwinds like Ctrl-C: engines shut down, caches close
            # standalone: click prints usage errors itself and exits 2; `obj`: the command line, for lineage
            app(args=argv, prog_name="factory", obj=command)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except FactoryError as e:
        from ..core.redact import redact_text

        typer.echo(f"error: {redact_text(str(e))}", err=True)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())

