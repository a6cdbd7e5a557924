"""Commands made from stage modules: a stage module that declares `CLI_OPTIONS` (dotted fields of its Config) gets
`factory KIND` (or `factory COMMAND`) with no code here. Each option's type, help and choices come from its field
(TRL's TrlParser idea: the config owns the command line); `CLI_ARGUMENT` names the field the positional argument
fills (a run directory). As with every stage command, `--config FILE` and `--set a.b=v` reach every other field.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..config.loader import build
from .options import ConfigOpt, SectionOpt, SetOpt, interruptible, layers, put, run_context

PACKAGES = ("factory.stages", "train.stages")


def stage_modules() -> Iterator[ModuleType]:
    """The stage modules that declare a command (every module of the stage packages, imported: they are light)."""
    for package in PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            module = importlib.import_module(f"{package}.{info.name}")
            if hasattr(module, "CLI_OPTIONS"):
                yield module


def field(model: type[BaseModel], dotted: str) -> FieldInfo:
    """The field at a dotted path of a config model (through its sub-models)."""
    head, _, rest = dotted.partition(".")
    if head not in model.model_fields:
        raise KeyError(f"{model.__name__} has no field {head!r} (CLI_OPTIONS: {dotted})")
    info = model.model_fields[head]
    return field(_model_of(info.annotation), rest) if rest else info


def _model_of(annotation: Any) -> type[BaseModel]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return next(a for a in args if isinstance(a, type) and issubclass(a, BaseModel))


def _option_type(annotation: Any) -> Any:
    """The type the command line parses: Optional unwrapped, a Literal as text (the config checks the choice and
    says which field), lists of text as a repeatable option."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str
    if origin in (list, tuple):
        return list[str]
    return annotation if annotation in (str, int, float, bool) else str


def _parameter(model: type[BaseModel], spec: str) -> tuple[str, inspect.Parameter]:
    """`dotted` or `dotted=flag-name` -> (dotted path, the keyword parameter typer reads)."""
    dotted, _, flag = spec.partition("=")
    info = field(model, dotted)
    name = flag or dotted.rsplit(".", 1)[-1].replace("_", "-")
    kind = _option_type(info.annotation)
    decl = f"--{name}/--no-{name}" if kind is bool else f"--{name}"
    option = typer.Option(decl, help=info.description or "", show_default=False)
    param = inspect.Parameter(name.replace("-", "_"), inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=Annotated[kind | None, option])
    return dotted, param


def stage_command(stage: ModuleType) -> Callable[..., None]:
    """`factory KIND [ARG] [--OPTION ...] [--config FILE] [--set a.b=v]`: builds the config (file < options <
    --set), runs the stage with its RunContext; Ctrl-C says what was kept."""
    model = stage.Config
    options = [_parameter(model, spec) for spec in stage.CLI_OPTIONS]
    argument = getattr(stage, "CLI_ARGUMENT", None)
    kind = getattr(stage, "COMMAND", None) or stage.KIND

    def command(cli: typer.Context, config: str | None = None, set_: list[str] | None = None,
                section: str | None = None, **values: Any) -> None:
        flags: dict[str, Any] = {}
        if argument:
            put(flags, argument, values.pop(argument.replace(".", "_")))
        for dotted, param in options:
            put(flags, dotted, values.get(param.name))
        cfg = build(model, *layers(config, flags, set_), where=config or kind)
        interruptible(stage.run, cfg, run_context(cli, section),
                      getattr(stage, "INTERRUPTED", "what was finished is kept; rerun to go on"))

    params = [inspect.Parameter("cli", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    if argument:
        params.append(inspect.Parameter(argument.replace(".", "_"), inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            str, typer.Argument(help=field(model, argument).description or "", show_default=False)]))
    params += [p for _, p in options]
    params += [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt),
               inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOpt),
               inspect.Parameter("section", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SectionOpt)]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {}  # typer reads the signature's annotations
    command.__doc__ = (stage.__doc__ or "").strip().split("\n\n")[0]
    return command


def add_stage_commands(app: typer.Typer) -> None:
    """A command for every stage module that declares one and has no hand-written command of its name."""
    taken = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    for stage in stage_modules():
        name = getattr(stage, "COMMAND", None) or stage.KIND
        if name not in taken:
            app.command(name)(stage_command(stage))
