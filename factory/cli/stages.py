"""Commands made from stage modules: a stage module that declares `CLI_OPTIONS` (dotted fields of its Config) is
the command of its module's name (`factory/stages/generate.py`: `factory generate`), with no code here. The
module is imported when its command runs (`StageGroup`), so the CLI starts without the others. Each option's type, help and choices come from its field
(TRL's TrlParser idea: the config owns the command line); `CLI_ARGUMENT` names the field the positional argument
fills (a run directory). As with every stage command, `--config FILE` and `--set a.b=v` reach every other field.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.markup import escape
from typer.core import TyperGroup

from ..config.loader import build
from .options import ConfigOpt, SectionOpt, SetOpt, interruptible, layers, put, run_context

PACKAGES = ("factory.stages", "train.stages")


def stage_module(name: str) -> ModuleType | None:
    """The stage module of this command name, if it declares a command."""
    for package in PACKAGES:
        try:
            module = importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{package}.{name}":
                continue
            raise
        if hasattr(module, "CLI_OPTIONS"):
            return module
    return None


def stage_names() -> list[str]:
    """Every command a stage module declares (this imports them all: for the help's list only)."""
    names = [info.name for package in PACKAGES
             for info in pkgutil.iter_modules(importlib.import_module(package).__path__)]
    return [n for n in dict.fromkeys(names) if stage_module(n) is not None]


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


Spec = str | tuple[str, str, Callable[[str], Any]]


def _parameter(model: type[BaseModel], spec: Spec) -> tuple[str, inspect.Parameter]:
    """`dotted` or `dotted=flag-name` -> (dotted path, the keyword parameter typer reads). A compound option,
    (dotted, help, parse), is text that `parse` turns into the value at `dotted` (a dict: several fields, e.g.
    `--teacher ENGINE:MODEL`)."""
    if isinstance(spec, tuple):
        dotted, help_, _ = spec
        name, kind = dotted.rsplit(".", 1)[-1].replace("_", "-"), str
    else:
        dotted, _, flag = spec.partition("=")
        info = field(model, dotted)
        name, kind, help_ = flag or dotted.rsplit(".", 1)[-1].replace("_", "-"), _option_type(info.annotation), \
            info.description or ""
    decl = f"--{name}/--no-{name}" if kind is bool else f"--{name}"
    option = typer.Option(decl, help=escape(help_), show_default=False)  # `[ray]` is text, not rich markup
    param = inspect.Parameter(name.replace("-", "_"), inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=Annotated[kind | None, option])
    return dotted, param


def stage_command(stage: ModuleType) -> Callable[..., None]:
    """`factory KIND [ARG] [--OPTION ...] [--config FILE] [--set a.b=v]`: builds the config (file < options <
    --set), runs the stage with its RunContext; Ctrl-C says what was kept."""
    model = stage.Config
    options = [_parameter(model, spec) for spec in stage.CLI_OPTIONS]
    parsers = {spec[0]: spec[2] for spec in stage.CLI_OPTIONS if isinstance(spec, tuple)}
    argument = getattr(stage, "CLI_ARGUMENT", None)
    kind = stage.__name__.rsplit(".", 1)[-1]  # the command: the module's name

    def command(cli: typer.Context, config: str | None = None, set_: list[str] | None = None,
                section: str | None = None, **values: Any) -> None:
        flags: dict[str, Any] = {}
        if argument:
            put(flags, argument, values.pop(argument.replace(".", "_")))
        for dotted, param in options:
            value = values.get(param.name)
            if value is not None and dotted in parsers:
                value = parsers[dotted](value)
            for key, part in (value.items() if isinstance(value, dict) else [(None, value)]):
                put(flags, f"{dotted}.{key}" if key else dotted, part)  # a dict merges into what others set
        cfg = build(model, *layers(config, flags, set_), where=config or kind)
        interruptible(stage.run, cfg, run_context(cli, section),
                      getattr(stage, "INTERRUPTED", "what was finished is kept; rerun to go on"))

    params = [inspect.Parameter("cli", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    if argument:
        params.append(inspect.Parameter(argument.replace(".", "_"), inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            str, typer.Argument(help=escape(field(model, argument).description or ""), show_default=False)]))
    params += [p for _, p in options]
    params += [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt),
               inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOpt),
               inspect.Parameter("section", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SectionOpt)]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {}  # typer reads the signature's annotations
    command.__doc__ = escape((stage.__doc__ or "").strip().split("\n\n")[0])
    return command


class StageGroup(TyperGroup):
    """The `factory` group: its hand-written commands, then one per stage module that declares one, made when it
    is asked for."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        own = super().list_commands(ctx)
        return own + [n for n in stage_names() if n not in own]

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None or not name.isidentifier():
            return command
        stage = stage_module(name)
        if stage is None:
            return None
        one = typer.Typer(add_completion=False)
        one.command(name)(stage_command(stage))
        return typer.main.get_command(one)
