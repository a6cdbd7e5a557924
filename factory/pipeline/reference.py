"""The configuration reference, generated from the config models' own fields (their types, defaults and
descriptions), as verl generates its trainer config: `factory config reference --out docs/config-reference.md`
writes it, and a test keeps the committed file equal to what the code says."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

HEADER = """# Configuration reference

Generated from the config models by `factory config reference --out docs/config-reference.md` (a test fails when
this file and the code disagree). Every field is a key of the stage's block in a pipeline file, of a `-c` config
file, or of `--set KEY=VALUE`; nested keys are dotted. An eval block is a list of such entries, each with a
`name`: `--set eval.size=80` sets every eval, `--set eval.NAME.size=80` the one named.
"""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (alone or optional), to document its fields one by one; None otherwise."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(models) == 1:
            return _model_of(models[0])
    return None


def _type(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    # a nested model reads as its class name, not the module it lives in (which moves)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", str(annotation)).replace("NoneType", "None")


REQUIRED = object()  # a field without a default


def _default_value(field: Any) -> Any:
    return REQUIRED if field.is_required() else field.get_default(call_default_factory=True)


def _shown(value: Any) -> str:
    return "(required)" if value is REQUIRED else f"`{value!r}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def rows(model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None
         ) -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every leaf field of `model`, nested models unfolded. A nested
    model's defaults are its field's (the judge's teacher defaults to an API model, not to the teacher's)."""
    for name, field in model.model_fields.items():
        value = getattr(defaults, name) if defaults is not None else _default_value(field)
        nested = _model_of(field.annotation)
        if nested is not None:
            yield from rows(nested, f"{prefix}{name}.", value if isinstance(value, BaseModel) else None)
        else:
            yield prefix + name, _type(field.annotation), _shown(value), field.description or ""


def section(title: str, model: type[BaseModel], intro: str = "") -> str:
    lines = [f"## {title}", "", *([intro, ""] if intro else []), "| key | type | default | description |",
             "|---|---|---|---|"]
    lines += [f"| `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(help_)} |"
              for key, kind, default, help_ in rows(model)]
    return "\n".join(lines) + "\n"


def markdown() -> str:
    from ..stages.estimates import PlanAssumptions
    from .registry import STAGES

    parts = [HEADER]
    for kind, stage in STAGES.items():
        parts.append(section(f"`{kind}`", stage.Config, getattr(stage, "BLOCK_HELP", "")))
    parts.append(section("`plan`", PlanAssumptions, "The dry run's assumptions (`factory run --dry-run`)."))
    return "\n".join(parts)


_MISSING = object()


def _lookup(tree: Any, dotted: str) -> Any:
    """The value at `dotted` in the nested dict `tree` (a YAML section or the --set overrides), or _MISSING."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _given(value: Any, given: Any) -> str:
    """Where a given value went: itself, or (a scalar the stage's resolve replaced, `engine: auto`) derived."""
    scalar = isinstance(value, (str, int, float, bool)) and isinstance(given, (str, int, float, bool))
    return "" if not scalar or value == given or str(value) == str(given) else f"derived from {given!r}, "


def provenance(cfg: BaseModel, from_file: Any, from_set: Any) -> Iterator[tuple[str, Any, str]]:
    """(dotted key, resolved value, where it came from) for every leaf of `cfg`: `--set`, the file, the model's
    default, or derived (by the loader from other values: output folders, references to other stages; or by the
    stage's resolve: the engine `auto` picks, the generation limit). An optional section left unset
    (`teacher.prices: None`) is one row."""
    defaults = dict((key, default) for key, _, default, _ in rows(type(cfg)))
    shown: set[str] = set()
    for leaf, _, _, _ in rows(type(cfg), defaults=cfg):
        key, value = _resolved(cfg, leaf)
        if key in shown:
            continue
        shown.add(key)
        if (given := _lookup(from_set, key)) is not _MISSING:
            source = _given(value, given) + "--set"
        elif (given := _lookup(from_file, key)) is not _MISSING:
            source = _given(value, given) + "file"
        elif key != leaf or _shown(value) == defaults[key]:
            source = "default"
        else:
            source = "derived"
        yield key, value, source


def _resolved(cfg: BaseModel, leaf: str) -> tuple[str, Any]:
    """The value at `leaf`, or the unset (None) section above it and its key."""
    value: Any = cfg
    parts = leaf.split(".")
    for i, part in enumerate(parts):
        value = getattr(value, part)
        if value is None and i < len(parts) - 1:
            return ".".join(parts[:i + 1]), None
    return leaf, value


def show_pipeline(path: str, sets: list[str]) -> str:
    """Every value of every stage instance of a pipeline file as it will run (the stage's own `resolve` applied:
    `engine: auto` decided, the generation limit read...), with where it came from."""
    from ..config.loader import load_yaml, parse_overrides
    from .load import entry_override, load_pipeline, resolve_refs
    from .registry import STAGES

    p, doc, over = load_pipeline(path, sets), load_yaml(path), parse_overrides(sets)
    blocks = []
    for inst in p.instances:
        file_part, set_part = doc.get(inst.block), over.get(inst.block)
        if inst.entry is not None:  # an entry of a list block (an eval): its own part of the file and of --set
            names = {str(e.get("name")) for e in file_part or [] if isinstance(e, dict)}
            file_part = next((e for e in file_part or [] if isinstance(e, dict) and e.get("name") == inst.entry), {})
            set_part = entry_override(set_part or {}, names, inst.entry)
        cfg = STAGES[inst.kind].resolve(resolve_refs(inst, p, prepare=False))
        blocks.append(_block(inst.name, provenance(cfg, file_part, set_part)))
    return "\n".join(blocks)


def _block(title: str, values: Iterator[tuple[str, Any, str]]) -> str:
    """Printed through the redaction every artifact goes through: headers and secret-named values are masked."""
    from ..core.redact import redact, redact_text

    lines = [f"[{title}]"]
    for key, value, source in values:
        last = key.rsplit(".", 1)[-1]
        lines.append(f"{key} = {redact({last: value})[last]!r}  # {source}")
    return redact_text("\n".join(lines) + "\n")
