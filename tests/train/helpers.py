from pathlib import Path

from train import synthetic


def write_kept(run_dir: Path, n: int = 16, reasoning_words: int = 20) -> Path:
    """A run directory with `n` kept traces in R1 format, as `factory filter` writes them."""
    return synthetic.write_kept(run_dir, n, lambda i: f"We add {i} and {i}. " + " ".join(
        ["Then we check it."] * (reasoning_words // 4 + i % 5)), source="test")
