"""Peak memory of distill's data preparation per rank: every rank tokenising the whole mixture into Python lists
(before) vs the main process streaming it once into a memory-mapped Arrow file the other ranks map (now).

    .venv/bin/python bench/sft_data.py [--sizes 5000,10000,20000] [--big 100000] [--tokens 4000]

Synthetic kept traces of ~TOKENS tokens each (the bundled SmolLM2 tokenizer) are written once per size; each
variant then runs in a fresh process that reports its peak private memory (RssAnon) above what it held after
imports: what data preparation costs each rank (the mapped file's pages are shared through the page cache). `before` is run at the smaller sizes only: it holds every token as a
Python int (about 60 bytes a token with its label), which at 100k samples of 4k tokens would not fit in 24 GB.
Writes bench/results/sft_data.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = ("we add the numbers then check each step so the total matches what the problem asks carry borrow digit "
         "column result sum difference product quotient verify again").split()

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from transformers import AutoTokenizer
import datasets, pyarrow  # the libraries both variants load, so that the baseline is the same
from factory.config.stages import DistillConfig
from factory.storage.models import resolve_model
from train.sft import student_tokenizer
from train.students import resolve_student

import threading

def status_mb(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) / 1024

peak_private = [0.0]

def watch():  # private memory (RssAnon) is what each rank pays; file pages of a mapped file are shared
    while True:
        peak_private[0] = max(peak_private[0], status_mb("RssAnon"))
        time.sleep(0.02)

def rss_mb():
    return status_mb("VmRSS")

tok, _ = student_tokenizer(resolve_model("smollm2-135m"), resolve_student("smollm2-135m"))
cfg = DistillConfig(run_dir={run!r}, student="smollm2-135m")
base, base_private = rss_mb(), status_mb("RssAnon")
threading.Thread(target=watch, daemon=True).start()
started = time.perf_counter()
variant = {variant!r}
if variant == "before":  # what every rank did: items and tokens in lists, then a Dataset copied from them
    from datasets import Dataset
    from train.mixture import load_items
    from train.sft_data import build_samples
    items, _ = load_items(cfg)
    data, report = build_samples(items, tok, 1 << 20, show=False)
    ds = Dataset.from_dict(data)
else:
    from train.mixture import stream_items
    from train.sft_data import load_samples, write_samples
    if variant == "main":  # the main process tokenises once, streaming, into the file
        write_samples(stream_items(cfg, []), tok, 1 << 20, Path({out!r}), show=False)
    ds, report = load_samples(Path({out!r}), 42)  # every rank maps it
    assert len(ds) == report.samples
    sum(len(ds[i]["input_ids"]) for i in range(0, len(ds), max(1, len(ds) // 64)))  # pages in a sample of rows
time.sleep(0.05)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"samples": report.samples, "tokens": report.tokens, "rss_after_imports_mb": round(base),
                  "peak_rss_mb": round(peak), "private_held_mb": round(peak_private[0] - base_private),
                  "seconds": round(time.perf_counter() - started, 1)}}))
"""


def write_kept(run_dir: Path, samples: int, words: int) -> None:
    """Kept traces whose reasoning is a random window of a long synthetic text (cheap to make at 100k)."""
    from train import synthetic

    if (run_dir / "filtered" / "kept" / "manifest.json").exists():
        return
    rng = random.Random(0)
    text = " ".join(rng.choice(WORDS) for _ in range(words * 50)).split(" ")
    starts = [rng.randrange(0, len(text) - words) for _ in range(samples)]
    synthetic.write_kept(run_dir, samples, lambda i: " ".join(text[starts[i]:starts[i] + words]), source="bench")


def measure(variant: str, run_dir: Path, out: Path) -> dict:
    code = CHILD.format(repo=str(REPO), run=str(run_dir), out=str(out), variant=variant)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{variant} on {run_dir}: {res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,10000,20000", help="samples, for both variants")
    ap.add_argument("--big", type=int, default=100_000, help="samples, for the streamed variant only (0: skip)")
    ap.add_argument("--tokens", type=int, default=4000, help="about this many tokens per sample")
    ap.add_argument("--work", default="runs/bench-sft-data")
    args = ap.parse_args()
    work = Path(args.work)
    words = int(args.tokens / 1.1)  # this text runs ~1.1 SmolLM2 tokens a word
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    for n in sizes + ([args.big] if args.big else []):
        run_dir = work / f"kept-{n}"
        started = time.perf_counter()
        write_kept(run_dir, n, words)
        print(f"{n} samples written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for variant in (["before"] if n in sizes else []) + ["main", "other_rank"]:
            r = {"variant": variant, **measure(variant, run_dir, work / f"data-{n}")}
            rows.append(r)
            print(json.dumps(r), file=sys.stderr)
    print(f"{'variant':<11} {'samples':>8} {'tokens':>12} {'private MB':>10} {'peak RSS MB':>11} {'s':>7}")
    for r in rows:
        print(f"{r['variant']:<11} {r['samples']:>8} {r['tokens']:>12,} {r['private_held_mb']:>10} "
              f"{r['peak_rss_mb']:>11} {r['seconds']:>7}")
    out = REPO / "bench" / "results" / "sft_data.json"
    out.write_text(json.dumps({"tokens_per_sample": args.tokens, "rows": rows,
                               "note": "private_held_mb: peak private memory (RssAnon, sampled every 20 ms) "
                                       "minus after imports, one process per variant; peak_rss_mb also counts the "
                                       "mapped file's pages, shared by every rank through the page cache; "
                                       "other_rank: a rank that maps the main process's file"}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
