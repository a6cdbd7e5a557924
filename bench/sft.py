"""SFT throughput: `factory distill`'s trainer vs TRL's SFTTrainer with its default batching (random order, padded
to the longest sample in each batch), side by side in one run, on the same kept shards, on CPU.

    .venv/bin/python bench/sft.py [--students tiny:192,smollm2-135m:48]   (student:samples)

The kept traces have a realistic reasoning-trace length mix: lognormal token counts with a long tail. Both trainers
get the same tokenised samples (same loss mask, same max_length, so TRL's default cut at 1024 does not flatter it),
the same batch size, and one full epoch, so both see every sample once. Measured: trainable (assistant) tokens per
second of training, and the share of the batch tensors that are real tokens rather than padding.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from factory.config.stages import DistillConfig  # noqa: E402
from train import synthetic  # noqa: E402

WORDS = "we add the numbers then check each step so the total matches what the problem asks".split()


def write_kept(run_dir: Path, samples: int, median_words: int, seed: int = 0) -> None:
    """Kept traces whose reasoning lengths are log-normal around `median_words` (long tails, as real traces)."""
    rng = random.Random(seed)

    def reasoning(i: int) -> str:
        words = max(8, min(int(rng.lognormvariate(0, 0.9) * median_words), median_words * 12))
        return " ".join(rng.choice(WORDS) for _ in range(words))

    synthetic.write_kept(run_dir, samples, reasoning, source="bench")


def timed_train(trainer, tally: dict) -> dict:
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "steps": trainer.state.global_step,
            "trainable_tokens_per_s": round(tally["trainable"] / seconds, 1),
            "nonpad_share": round(tally["real"] / tally["tokens"], 4), "padded_tokens": tally["tokens"]}


def bench_student(student: str, run_dir: Path, batch: int, max_length: int) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from train.sft import build_trainer
    from train.sft_data import build_samples
    from train.students import model_path, resolve_settings
    from train.trainer import FactorySFTTrainer

    cfg = DistillConfig(run_dir=str(run_dir), student=student, epochs=1, batch_size=batch, grad_accum=1,
                        max_length=max_length, save_steps=10**6, progress=False)
    s = resolve_settings(cfg)
    path = model_path(s.preset)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    data, report = build_samples(run_dir / "filtered" / "kept", tokenizer, max_length, show=False)
    results = {"samples": report.samples, "tokens": report.tokens, "trainable_tokens": report.trainable_tokens}

    tally: dict = {}
    trl_args = SFTConfig(output_dir=str(run_dir / f"trl-{student}"), per_device_train_batch_size=batch,
                         num_train_epochs=1, max_length=max_length, report_to=[], save_strategy="no",
                         disable_tqdm=True, logging_steps=10**6, learning_rate=s.lr,
                         bf16=False)  # TRL defaults to bf16, which a CPU refuses
    trl = FactorySFTTrainer(model=path, args=trl_args, train_dataset=Dataset.from_dict(data),
                            processing_class=tokenizer, tally=tally)  # TRL's own sampler; the tally only counts
    results["trl_default"] = timed_train(trl, tally)

    tally = {}
    ours = build_trainer(cfg, s, path, tokenizer, data, run_dir / f"factory-{student}", report, tally)
    results["factory"] = timed_train(ours, tally)
    results["speedup"] = round(results["factory"]["trainable_tokens_per_s"]
                               / results["trl_default"]["trainable_tokens_per_s"], 2)
    return results


def lognormal_lengths(samples: int, median_tokens: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [max(16, min(int(rng.lognormvariate(0, 0.9) * median_tokens), median_tokens * 12))
            for _ in range(samples)]


def batching_shares(batch: int, sizes=(192, 2_000, 20_000), median_tokens: int = 2_000) -> dict:
    """Non-pad share of each sampler's batches alone (no training): the property that decides the padding waste,
    at dataset sizes a CPU cannot train through in a benchmark."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from train.batching import LengthBucketSampler, nonpad_share

    out = {}
    for n in sizes:
        lengths = lognormal_lengths(n, median_tokens)
        chunk = lambda order: [order[i:i + batch] for i in range(0, len(order), batch)]  # noqa: E731
        torch.manual_seed(0)
        out[n] = {"trl_default_random": nonpad_share(lengths, chunk(torch.randperm(n).tolist())),
                  "transformers_group_by_length": nonpad_share(lengths, chunk(list(LengthGroupedSampler(
                      batch, lengths=lengths)))),
                  "factory_buckets": nonpad_share(lengths, LengthBucketSampler(lengths, batch, seed=0).batches())}
        out[n] = {k: round(v, 4) for k, v in out[n].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--median-words", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--students", default="tiny:192,smollm2-135m:48", help="student:samples, comma-separated")
    args = ap.parse_args()
    result = {"median_words": args.median_words, "batch": args.batch, "max_length": args.max_length,
              "students": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.students.split(","):
            student, _, samples = spec.partition(":")
            run_dir = Path(tmp) / student
            write_kept(run_dir, int(samples or 128), args.median_words)
            r = bench_student(student, run_dir, args.batch, args.max_length)
            result["students"][student] = r
            print(f"{student}: {r['samples']} samples, {r['tokens']} tokens")
            for name in ("trl_default", "factory"):
                m = r[name]
                print(f"  {name:12s} {m['trainable_tokens_per_s']:>9,.0f} trainable tok/s  "
                      f"non-pad {m['nonpad_share']:.1%}  {m['seconds']} s")
            print(f"  factory / TRL default: {r['speedup']}x")
    result["batching_only"] = batching_shares(args.batch)
    print(f"non-pad share of the batches alone (lognormal lengths, median 2k tokens, batch {args.batch}):")
    for n, shares in result["batching_only"].items():
        print(f"  {n:>6} samples  " + "  ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    out = REPO / "bench" / "results" / "sft.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
