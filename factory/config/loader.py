"""How a config is read and written: YAML (dates as text), `--set a.b=v` overrides, merging layers into a
validated model whose errors name the field, and the public dump and fingerprint every artifact carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..core.errors import FactoryError

NOT_FINGERPRINTED = ("executor",)  # how a stage runs, not what it makes

M = TypeVar("M", bound=BaseModel)


class _PlainDates(yaml.SafeLoader):
    """YAML without the timestamp type: `2024-08-01` stays the text the user wrote (a config's dates are text,
    checked by their fields), and `2024-13-45` is not an error before any field is looked at."""


_PlainDates.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def read_yaml(text: str) -> Any:
    """YAML as a config reads it (safe, dates as text)."""
    return yaml.load(text, Loader=_PlainDates)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`a.b=v` pairs into a nested dict; values are parsed as YAML scalars (so 0.6 is a float, true a bool)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FactoryError(f"--set {pair!r}: expected KEY=VALUE, e.g. sampling.temperature=0.7")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FactoryError(f"--set {pair!r}: '{part}' is both a value and a section")
        try:
            node[parts[-1]] = read_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            from ..core.redact import is_secret_name

            shown = "" if is_secret_name(parts[-1]) else f" {raw!r}"
            raise FactoryError(f"--set {key.strip()}: invalid YAML value{shown}: {problem}") from None
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = deep_merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    if Path(path).is_dir():
        raise FactoryError(f"{path}: is a directory, not a config file (name a YAML file in it)")
    try:
        data = read_yaml(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise FactoryError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FactoryError(f"{path}: cannot read the config file ({type(e).__name__})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise FactoryError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise FactoryError(f"{path}: expected a mapping at the top level")
    return data


def build(model: type[M], *layers: dict[str, Any], where: str = "config") -> M:
    """Merge layers (later wins) and validate; a bad field becomes one readable line naming it."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            raise FactoryError(f"{where}: expected a mapping of fields, got {type(layer).__name__} {layer!r:.60}")
        merged = deep_merge(merged, layer)
    from ..core.redact import register_config

    register_config(merged)  # secret values in it are masked in any text that quotes them from now on
    try:
        return model.model_validate(merged)
    except ValidationError as e:
        raise FactoryError(describe(e, where)) from None


def describe(e: ValidationError, where: str, prefix: str = "") -> str:
    """A validation error as `WHERE: field 'a.b': what is wrong`, one clause per field (no pydantic URL)."""
    lines = []
    for err in e.errors():
        field = prefix + ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: field '{field}': {msg}")
    return "; ".join(lines)


def public_dump(cfg: BaseModel) -> dict[str, Any]:
    """The config as JSON for files people share (run directories, cards, eval results), through the one
    redaction function. API keys never enter a config at all (only the name of their variable does)."""
    from ..core.redact import redact

    return redact(cfg.model_dump(mode="json"))


def artifact_config(cfg: BaseModel) -> dict[str, Any]:
    """The config an artifact carries (a shard manifest): public, and without how the stage ran, so that a local
    run and a Ray run (or a merged one) write the same file."""
    return {k: v for k, v in public_dump(cfg).items() if k not in NOT_FINGERPRINTED}


def fingerprint(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    data = {k: v for k, v in data.items() if k not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
