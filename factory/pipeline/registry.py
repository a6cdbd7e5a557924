"""The stage kinds a pipeline can name: every stage module of factory/stages/ and train/stages/ (what one holds:
factory/stages/base.py), found by its `KIND` and put in its `ORDER`. Adding a kind is adding such a module;
nothing here, in the loader, the runner or the dry run changes.

The stage modules are light (torch and the engines load when a stage runs), so discovering them keeps the CLI
light: no torch to plan a pipeline.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

PACKAGES = ("factory.stages", "train.stages")


def _discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for package in PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            module = importlib.import_module(f"{package}.{info.name}")
            kind = getattr(module, "KIND", None)
            if kind is None:
                continue  # a helper module (base, estimates) or a command that is no pipeline stage (merge, push)
            if kind in found:
                raise RuntimeError(f"two stage modules of kind {kind!r}: {found[kind].__name__}, {module.__name__}")
            found[kind] = module
    return dict(sorted(found.items(), key=lambda item: item[1].ORDER))


STAGES: dict[str, ModuleType] = _discover()
KINDS = list(STAGES)  # also the order a plain `stages:` list is run in
