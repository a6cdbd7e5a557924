"""Eval metrics: pass@1 with its confidence interval, the unbiased pass@k estimator, maj@k, and the test that
says whether a difference between two results is larger than their noise.

Written here because the estimators are a few lines each and their exact definitions matter (ties, CIs, pairing):
pass@k is Chen et al. 2021's unbiased estimator; the CIs of one result are normal intervals over problems, and
differences between two results are t-tests (scipy), paired over the problems they share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

LENIENT = "lenient_pass@1"  # pass@1 where an answer without \boxed{} counts by its last number
# A problem's mean completion tokens over its correct samples (problems with none have no value): how long a
# model takes to be right, compared paired over the problems both models solve (a conciseness gain, not a guess).
TOKENS_PER_CORRECT = "tokens_per_correct"

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n, c of them correct, is correct)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def mean_ci(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% normal interval (None with fewer than 2 values)."""
    n = len(values)
    if n == 0:
        return float("nan"), None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, Z95 * math.sqrt(var / n)


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> float:
    """maj@k for one problem: 1 if the most common answer is right; a tie at the top scores the share of tied
    answers that are right (the expected score of breaking the tie at random). Unanswered samples do not vote."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    right = {a for a, ok in zip(answers, correct) if a is not None and ok}
    return sum(a in right for a in tied) / len(tied)


def normalise_answer(answer: str | None) -> str | None:
    """Votes group answers that differ only in spacing, $ signs or a trailing period."""
    if answer is None:
        return None
    out = "".join(answer.split()).rstrip(".").strip("$").rstrip(".")
    return out or None


def problem_metrics(correct: Sequence[bool], answers: Sequence[str | None], ks: Sequence[int],
                    majority: bool = True) -> dict[str, float]:
    """pass@1, pass@k and (where answers can be compared, so not for code) maj@k, for k up to n."""
    n, c = len(correct), sum(correct)
    out = {"pass@1": c / n if n else 0.0}
    for k in ks:
        if 1 < k <= n:
            out[f"pass@{k}"] = pass_at_k(n, c, k)
    for k in ks if majority else []:
        if k <= n:
            out[f"maj@{k}"] = majority_correct([normalise_answer(a) for a in answers[:k]], correct[:k])
    return out


def difference(a: dict[str, float], b: dict[str, float], metric: str = "pass@1") -> dict[str, float | bool | None]:
    """B minus A on a metric, with a 95% CI and a two-sided p-value.

    `a` and `b` map problem id -> that problem's metric value. Over the problems both hold (two or more), the test
    is paired (scipy's `ttest_rel`: the per-problem differences, which removes how hard each problem is);
    otherwise it is Welch's unpaired `ttest_ind`. `significant` means the CI excludes zero.
    """
    from scipy import stats

    shared = sorted(set(a) & set(b))
    paired = len(shared) >= 2
    if paired:
        xa, xb = [a[p] for p in shared], [b[p] for p in shared]
        diffs = [y - x for x, y in zip(xa, xb)]
        delta = sum(diffs) / len(diffs)
        if max(diffs) == min(diffs):  # no spread: the t statistic is undefined, the difference is exact
            low = high = delta
            p_value = 1.0 if delta == 0 else 0.0
        else:
            res = stats.ttest_rel(xb, xa)
            low, high = res.confidence_interval(0.95)
            p_value = float(res.pvalue)
    else:
        xa, xb = list(a.values()), list(b.values())
        delta = (sum(xb) / len(xb) if xb else math.nan) - (sum(xa) / len(xa) if xa else math.nan)
        if len(xa) < 2 or len(xb) < 2:
            return {"metric": metric, "delta": delta, "ci95": None, "ci_low": None, "ci_high": None,
                    "p_value": None, "paired": False, "n": 0, "significant": False}
        res = stats.ttest_ind(xb, xa, equal_var=False)
        low, high = res.confidence_interval(0.95)
        p_value = float(res.pvalue)
    low, high = float(low), float(high)
    return {"metric": metric, "delta": delta, "ci95": (high - low) / 2, "ci_low": low, "ci_high": high,
            "p_value": p_value, "paired": paired, "n": len(shared) if paired else len(xa) + len(xb),
            "significant": low > 0 or high < 0}


def pooled_difference(pairs: Sequence[tuple[dict[str, float], dict[str, float]]],
                      metric: str = "pass@1") -> dict[str, float | bool | None]:
    """B minus A pooled over replicates (seeds): each (a, b) is one seed's per-problem values of the base and of
    a variant. A problem's difference is its mean over the seeds that scored it in both; the test is then
    `difference`'s paired t-test over problems (a problem, not a seed, is the unit that varies)."""
    sums: dict[str, float] = {}
    counts: Counter[str] = Counter()
    for a, b in pairs:
        for p in set(a) & set(b):
            sums[p] = sums.get(p, 0.0) + b[p] - a[p]
            counts[p] += 1
    diffs = {p: sums[p] / counts[p] for p in sums}
    out = difference({p: 0.0 for p in diffs}, diffs, metric)
    out["seeds"] = len(pairs)
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment for m tests (family-wise error at the nominal level): the i-th smallest p
    times (m - i), made monotone, capped at 1. None (no test) stays None and does not count in m. Written here
    because it is five lines and the project has no statistics package beyond scipy, which offers only
    Benjamini-Hochberg (`scipy.stats.false_discovery_control`)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
