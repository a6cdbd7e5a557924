"""What a GRPO run shows besides its model: rewards.png and length.png from rl_metrics.jsonl (R1-Zero's curves),
and summary.md with the first and last steps' figures and a few rollouts from each. Under a control
(`rewards.control: shuffled`) the accuracy the policy really earned is drawn from rollouts.jsonl's true rewards,
beside the shuffled ones it was given.

Rollouts are model output: written as data inside code fences, never run, never rendered as HTML.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from factory.core.redact import redact_text

SUMMARY_KEYS = ("reward", "reward_std", "completions/mean_length", "completions/clipped_ratio", "kl", "entropy")
EXAMPLES = 3  # rollouts shown from the first step and from the last
EXAMPLE_CHARS = 600


def summary_row(rows: list[dict]) -> dict[str, Any]:
    if not rows:
        return {}
    return {k: v for k, v in rows[0].items() if k in SUMMARY_KEYS or k.startswith("rewards/") or k == "step"}


def step_timing(rows: list[dict]) -> dict[str, float] | None:
    """Median seconds per step, split into generating the rollouts and the rest (scoring, log-probabilities,
    loss, backward, optimizer): where a CPU run's time goes."""
    timed = [r for r in rows if "step_s" in r and "generate_s" in r]
    if not timed:
        return None
    step = round(statistics.median(r["step_s"] for r in timed), 2)
    generate = round(statistics.median(r["generate_s"] for r in timed), 2)
    return {"steps_timed": len(timed), "median_step_s": step, "median_generate_s": generate,
            "median_update_s": round(step - generate, 2), "generate_share": round(generate / step, 3) if step else 0.0}


def groups_without_signal(rows: list[dict]) -> dict[str, Any] | None:
    """The share of prompt groups whose completions all earned the same reward (TRL's frac_reward_zero_std):
    their advantages are 0, so they teach nothing."""
    fracs = [r["frac_reward_zero_std"] for r in rows if "frac_reward_zero_std" in r]
    if not fracs:
        return None
    return {"share": round(statistics.fmean(fracs), 3), "steps_all_zero": sum(f == 1.0 for f in fracs),
            "steps": len(fracs)}


def read_rollouts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def true_accuracy(rollouts: list[dict[str, Any]]) -> dict[int, float]:
    """Step -> the mean accuracy the policy's completions really earned (a control logs them as true_rewards);
    rollouts.jsonl's step is the steps finished before the rollout, so step s's rollouts train step s + 1."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for r in rollouts:
        v = (r.get("true_rewards") or r["rewards"]).get("accuracy")
        if v is not None:
            by_step[r["step"] + 1].append(v)
    return {s: sum(v) / len(v) for s, v in sorted(by_step.items())}


def plot_curves(rows: list[dict], rollouts: list[dict[str, Any]], out: Path) -> None:
    """rewards.png (each reward's mean per step; under a control, the true accuracy too) and length.png (R1-Zero's
    "response length grows" curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ["reward", *sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})]:
        values = [r.get(key, math.nan) for r in rows]
        ax.plot(steps, values, label=key.removeprefix("rewards/").removesuffix("/mean"))
    if any("true_rewards" in r for r in rollouts):
        true = true_accuracy(rollouts)
        ax.plot(list(true), list(true.values()), "k--", label="accuracy earned (control: not given)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.set_title("factory grpo: rewards")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rewards.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r.get("completions/mean_length", math.nan) for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("mean completion tokens")
    ax.set_title("factory grpo: response length")
    fig.tight_layout()
    fig.savefig(out / "length.png", dpi=120)
    plt.close(fig)


def write_summary(out: Path, summary: dict[str, Any], rollouts: list[dict[str, Any]]) -> None:
    """summary.md: the first and last steps side by side, the curves, and rollouts from both ends."""
    first, last = summary.get("first") or {}, summary.get("last") or {}
    keys = [k for k in (*SUMMARY_KEYS, *sorted(k for k in last if k.startswith("rewards/"))) if k in last]
    lines = [f"# GRPO: {out.name}, {summary['steps']} steps from `{summary['model']}`", "",
             f"Rewards {json.dumps(summary['rewards'])}, template {summary['data']['template']}"
             + (", **control: rewards shuffled within each group**" if summary.get("control") == "shuffled" else "")
             + ".", "", "| metric | first step | last step |", "|---|---|---|"]
    lines += [f"| {k} | {_num(first.get(k))} | {_num(last.get(k))} |" for k in keys]
    if summary.get("control") == "shuffled":
        true = true_accuracy(rollouts)
        if true:
            lines.append(f"| accuracy earned (not given) | {_num(next(iter(true.values())))} | "
                         f"{_num(list(true.values())[-1])} |")
    timing = summary.get("timing")
    if timing:
        lines += ["", f"A step took {timing['median_step_s']:.1f} s (median of {timing['steps_timed']}): "
                  f"{timing['median_generate_s']:.1f} s generating the rollouts "
                  f"({100 * timing['generate_share']:.0f}%), {timing['median_update_s']:.1f} s scoring and updating."]
    lines += _data_lines(summary)
    lines += ["", "![rewards](rewards.png) ![length](length.png)", ""]
    steps = sorted({r["step"] for r in rollouts})
    for title, step in (("first", steps[0]), ("last", steps[-1])) if steps else ():
        lines += [f"## Rollouts of the {title} step ({step + 1})", ""]
        for r in [r for r in rollouts if r["step"] == step][:EXAMPLES]:
            rewards = r.get("true_rewards") or r["rewards"]
            lines += [f"rewards {json.dumps(rewards)}, {r['tokens']} tokens:", "", *_fenced(r["completion"]), ""]
    (out / "summary.md").write_text(redact_text("\n".join(lines)))


def _data_lines(summary: dict[str, Any]) -> list[str]:
    """Which prompts were trained on, and how many groups taught nothing."""
    lines = []
    sel = summary["data"].get("pass_rate_selection")
    if sel:
        lines += ["", f"Trained on {sel['kept']} prompts with a pass rate in [{sel['range'][0]}, {sel['range'][1]}] "
                  f"in `{sel['run']}` (left out: {sel['too_easy']} too easy, {sel['too_hard']} too hard, "
                  f"{sel['ungraded']} not graded)."]
    idle = summary.get("groups_without_signal")
    if idle:
        lines += ["", f"{100 * idle['share']:.0f}% of prompt groups had rewards all equal (no advantage, nothing "
                  f"learnt); in {idle['steps_all_zero']} of {idle['steps']} steps every group did."]
    return lines


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _fenced(text: str) -> list[str]:
    """Untrusted text in a code fence it cannot close: longer than any run of backticks inside."""
    text = text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " […]"
    run = max((len(r) for r in text.split("\n") for r in _backtick_runs(r)), default=0)
    fence = "`" * max(3, run + 1)
    return [fence + "text", text, fence]


def _backtick_runs(line: str) -> list[str]:
    import re

    return re.findall(r"`+", line)
