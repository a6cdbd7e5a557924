from __future__ import annotations

import os
from pathlib import Path

import pytest

from factory.storage.models import is_prepared, model_dir

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "integration" in item.keywords or "ray" in item.keywords:
            item.add_marker(pytest.mark.slow)  # one list for `make test-fast` to skip: -m "not slow"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never reach a hub: fail fast instead of waiting on the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def fake_server():
    from tests.fakes.openai_server import FakeOpenAI

    servers = []

    def start(**kwargs) -> tuple[FakeOpenAI, str]:
        server = FakeOpenAI(**kwargs)
        url = server.start()
        servers.append(server)
        return server, url

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    if not is_prepared("smollm2-135m"):
        pytest.fail("the bundled model is not prepared: run `make setup`")
    return model_dir("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A random 2-layer Llama (hidden 64) with the bundled tokenizer and chat template: real code paths, fast."""
    from train.synthetic import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), smollm2_dir)


def python_without_the_project(root: Path) -> Path:
    """A virtual environment's python that imports every installed dependency but not this project: a `.pth` line
    puts this environment's site-packages on its path, and the editable install's own `.pth` there is not run
    (only a site directory's are). What a machine that never installed the project runs."""
    import subprocess
    import sys
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def run_env(tmp_path, monkeypatch):
    """Run the CLI inside a temporary directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
