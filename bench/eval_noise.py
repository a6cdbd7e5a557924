"""Where a paired eval difference's noise comes from: sampling within problems, or real per-problem differences.

For each `after` eval against one `before`, over the problems both hold: the paired difference with the eval's own
95% CI and p, its variance across problems, and the part of it that is sampling noise within problems (each model's
pass@1 on a problem is a mean of n Bernoulli samples, whose variance is p(1 - p) / (n - 1) unbiased). When the
sampling part is all of it, only more samples per model shrink the CI; the last column says how many samples per
problem both evals would need for the observed difference to reach p < 0.05 with 80% power.

    python -m bench.eval_noise BEFORE.json AFTER.json [AFTER.json ...] [--out bench/results/eval_noise.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from factory.core.eval_metrics import difference
from factory.stages.compare import load_result

Z_POWER = 1.96 + 0.84  # two-sided 5% test, 80% power


def per_problem(path: Path) -> dict[str, list[bool]]:
    return {p["prompt_id"]: [bool(s["correct"]) for s in p["samples"]] for p in load_result(str(path))["problems"]}


def sampling_variance(samples: list[bool]) -> float:
    n, p = len(samples), sum(samples) / len(samples)
    return p * (1 - p) / (n - 1) if n > 1 else 0.0


def compare(before: dict[str, list[bool]], after: dict[str, list[bool]]) -> dict:
    """The paired difference (eval's own test) and how much of its variance is sampling within problems."""
    def pass_at_1(samples: dict[str, list[bool]]) -> dict[str, float]:
        return {i: sum(s) / len(s) for i, s in samples.items()}

    rates_before, rates_after = pass_at_1(before), pass_at_1(after)
    paired = difference(rates_before, rates_after)
    ids = [i for i in after if i in before]
    total = statistics.variance(rates_after[i] - rates_before[i] for i in ids)
    within = statistics.mean(sampling_variance(after[i]) + sampling_variance(before[i]) for i in ids)
    mean, n = paired["delta"], len(before[ids[0]])
    needed = n * total * (Z_POWER / mean) ** 2 / len(ids) if mean else None
    return {"problems": paired["n"], "samples_per_problem": n, "difference": round(mean, 4),
            "ci_low": round(paired["ci_low"], 4), "ci_high": round(paired["ci_high"], 4),
            "p_value": round(paired["p_value"], 4), "variance": round(total, 4),
            "sampling_variance": round(within, 4), "sampling_share": round(within / total, 2) if total else None,
            "samples_needed_for_80pct_power": round(needed, 1) if needed else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path("bench/results/eval_noise.json"))
    args = ap.parse_args()
    before = per_problem(args.before)
    rows = {str(path): compare(before, per_problem(path)) for path in args.after}
    for path, row in rows.items():
        print(path, row)
    args.out.write_text(json.dumps({"before": str(args.before), "after": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
