"""The README and docs/ stay true: links resolve, every `factory` command shown is a real subcommand with real
options (checked against the CLI's own parser), the architecture the README draws is the one `lint-imports`
checks, and the README stays short enough to read in five minutes."""

from __future__ import annotations

import ast
import re

import pytest
import typer

from factory.cli import app
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def _commands() -> list[tuple[str, str]]:
    """(page, command line) for every line of a fenced block that runs `factory`."""
    out = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.splitlines():
                line = line.split(" # ")[0].strip()
                if line.startswith(("factory ", ".venv/bin/factory ")):
                    out.append((page.name, line))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: {target} does not exist"


def test_every_command_shown_is_a_real_subcommand_with_real_options():
    group = typer.main.get_command(app)
    commands = _commands()
    assert len(commands) > 20, "the docs show the CLI"
    for page, line in commands:
        words = line.split()[1:]
        for name in words[0].split("|"):
            command, rest = group.get_command(typer.Context(group), name), words[1:]  # stage commands: made on demand
            assert command is not None, f"{page}: `{line}`: no subcommand {name!r}"
            if isinstance(command, typer.core.TyperGroup):  # `factory config show ...`
                command, rest = command.commands.get(rest[0]), rest[1:]
                assert command is not None, f"{page}: `{line}`: no subcommand {name} {words[1]!r}"
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            for word in rest:
                option = word.strip("[]").split("=")[0]
                if option.startswith("--"):
                    assert option in options, f"{page}: `{line}`: {name} has no option {option}"


def test_the_readme_draws_the_layers_lint_imports_checks_and_stays_short():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    drawn = FENCE.findall(readme.split("## Architecture", 1)[1])[0]
    layers = [" | ".join(m.strip() for m in re.split(r"\s+\|\s+", re.split(r"\s{3,}", line.strip())[0]))
              for line in drawn.splitlines() if line.strip()]
    # the first contract's list, read as a literal (tomllib is 3.11+; the project supports 3.10)
    toml = (REPO / "pyproject.toml").read_text().split("[[tool.importlinter.contracts]]")[1]
    assert 'type = "layers"' in toml
    assert layers == ast.literal_eval(re.search(r"^layers = (\[.*?\])$", toml, re.S | re.M).group(1))


def test_the_config_reference_is_what_the_code_says():
    from factory.pipeline.reference import markdown

    committed = (REPO / "docs" / "config-reference.md").read_text()
    assert committed == markdown(), "stale: regenerate with `factory config reference --out docs/config-reference.md`"
    assert "| `teacher.engine` |" in committed and "| `judge.teacher.model` | str | `'gpt-4o-mini'` |" in committed
