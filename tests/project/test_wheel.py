"""The project as a user installs it: the wheel built from pyproject.toml, in an environment that has the
dependencies but has never seen this checkout. `factory card` renders its template and `--launch` finds its
configs from the installed files alone."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO, python_without_the_project
from tests.publish.test_card_push import run_dir  # noqa: F401 - a filtered run to write a card for


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, its environment's bin directory) with the wheel installed and nothing of the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    # built from a copy: pip builds in the source tree, and a build/ folder left there by an earlier build would
    # carry modules since removed into the wheel
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", "docs", "bench", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(root / "dist"), str(source)], check=True)
    wheel = next((root / "dist").glob("r1_factory-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "factory/publish/templates/dataset_card.md.j2" in names and "train/launch/fsdp.yaml" in names, sorted(names)
    modules = {n for n in names if n.endswith(".py")}
    assert modules == {str(p.relative_to(REPO)) for root_ in ("factory", "train") for p in (REPO / root_).rglob("*.py")}
    python = python_without_the_project(root / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", "--disable-pip-version-check", str(wheel)], check=True)
    return python, python.parent


def run_in(cwd, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def test_the_installed_wheel_writes_a_card_and_finds_launch_configs(installed, run_dir, tmp_path):  # noqa: F811
    python, bin_dir = installed
    where = run_in(tmp_path, str(python), "-c", "import factory, train; print(factory.__file__, train.__file__)")
    assert where.returncode == 0 and str(REPO) not in where.stdout, where.stdout + where.stderr
    card = run_in(tmp_path, str(bin_dir / "factory"), "card", str(run_dir))
    assert card.returncode == 0, card.stderr[-2000:]
    readme = (run_dir / "card" / "README.md").read_text()
    assert readme.startswith("---\n") and "traces" in readme and "{{" not in readme
    launch = run_in(tmp_path, str(python), "-c", "from train.launch import launch_config, shipped; "
                    "print(shipped()); print(launch_config('fsdp').read_text())")
    assert launch.returncode == 0, launch.stderr[-2000:]
    assert "'cpu_gloo', 'deepspeed_zero3', 'fsdp'" in launch.stdout and "distributed_type: FSDP" in launch.stdout
