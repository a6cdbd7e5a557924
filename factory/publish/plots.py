"""The card's plots, as PNG (matplotlib, Agg: no display needed). Deterministic for the same data."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: same data, same bytes
    fig.clf()


def token_histogram(kept: list[int], rejected: list[int], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    top = max([*kept, *rejected, 1])
    bins = [top * i / 30 for i in range(31)]
    ax.hist([kept, rejected], bins=bins, label=[f"kept ({len(kept)})", f"rejected ({len(rejected)})"],
            color=["#55a868", "#c44e52"], stacked=False)
    ax.set_xlabel("completion tokens")
    ax.set_ylabel("traces")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def funnel(stages: list[tuple[str, int]], path: Path) -> None:
    """stages: (label, rows remaining after it), from the input down to the kept rows."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(stages) + 1.2))
    labels = [s for s, _ in stages][::-1]
    values = [v for _, v in stages][::-1]
    ax.barh(labels, values, color="#4c72b0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("traces remaining")
    ax.set_xlim(0, max(values + [1]) * 1.15)
    _save(fig, path)
    plt.close(fig)


def pass_rates(rates: list[float], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(rates, bins=[i / 10 for i in range(11)], color="#8172b2", edgecolor="white")
    ax.set_xlabel("pass rate of the prompt's samples")
    ax.set_ylabel("prompts")
    _save(fig, path)
    plt.close(fig)


def adaptive(samples: dict[str, int], verified: dict[str, int], path: Path) -> None:
    """Adaptive sampling's histograms: samples bought per prompt, verified traces per prompt."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, hist, label, color in ((axes[0], samples, "samples bought per prompt", "#4c72b0"),
                                   (axes[1], verified, "verified traces per prompt", "#55a868")):
        xs = sorted(int(k) for k in hist)
        ax.bar(xs, [hist[str(x)] for x in xs], color=color, edgecolor="white")
        ax.set_xlabel(label)
        ax.set_ylabel("prompts")
    _save(fig, path)
    plt.close(fig)


def ablation(rows: list[tuple[str, float, float | None, float | None, bool]], path: Path, label: str) -> None:
    """Each variant's difference to the base with its 95% CI; a bar is coloured where the report calls the
    difference significant (the Holm-adjusted test), so the chart and the sentences agree."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    names = [r[0] for r in rows]
    deltas = [r[1] for r in rows]
    low = [r[1] - r[2] if r[2] is not None else 0 for r in rows]
    high = [r[3] - r[1] if r[3] is not None else 0 for r in rows]
    # coloured only where the report says significant (Holm-adjusted), grey otherwise, whatever the raw CI
    colors = ["#8c8c8c" if not r[4] else "#55a868" if r[1] > 0 else "#c44e52" for r in rows]
    ax.barh(names, deltas, xerr=[low, high], color=colors, capsize=4)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(label)
    _save(fig, path)
    plt.close(fig)


def pair_ratios(by_kind: dict[str, list[float]], path: Path) -> None:
    """Chosen over rejected completion tokens, per pair kind (below 1: the chosen side is the shorter)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for kind, ratios in by_kind.items():
        ax.hist(ratios, bins=30, range=(0, max(2.0, *ratios) if ratios else 2.0), alpha=0.6, label=kind)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("chosen tokens / rejected tokens")
    ax.set_ylabel("pairs")
    ax.set_title("preference pairs: length ratio")
    if by_kind:
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
