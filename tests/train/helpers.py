from pathlib import Path

from train import synthetic


def write_kept(run_dir: Path, n: int = 16, reasoning_words: int = 20) -> Path:
    """A run directory with `n` kept traces in R1 format, as `factory filter` writes them."""
    return synthetic.write_kept(run_dir, n, lambda i: f"We add {i} and {i}. " + " ".join(
        ["Then we check it."] * (reasoning_words // 4 + i % 5)), source="test")


def base_like_student(tmp: Path, hidden: int = 64, heads: int = 4) -> Path:
    """A tiny random model with a base model's tokenizer (EOS <|endoftext|>, no chat template), as the qwen-7b
    preset's Qwen2.5-Math-7B: distill gives it the R1-style template, whose turns end with <|im_end|>."""
    tok = synthetic.base_like_tokenizer(tmp / "base-tokenizer")
    return synthetic.build_tiny_model(tmp / "tiny-base", tok, hidden=hidden, heads=heads)


def one_sample_run(run_dir: Path) -> Path:
    """One kept trace, short enough that a few dozen steps teach a tiny model to reproduce it, end of turn
    included."""
    return write_kept(run_dir, n=1, reasoning_words=4)


MEMORISE = ["--max-steps", "40", "--no-progress", "--set", "lr=1e-2", "--set", "batch_size=1",
            "--set", "warmup_ratio=0", "--set", "save_steps=1000"]
