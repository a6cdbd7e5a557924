"""Adaptive rejection sampling against a fixed n, side by side in one run: completions bought, prompts with enough
verified traces, and coverage of hard prompts.

    .venv/bin/python bench/adaptive.py [--real 60] [--sim 5000] [--skip-real]
    .venv/bin/python bench/adaptive.py --quickstart     (c) only: writes bench/results/adaptive_quickstart.json

(b) real, small: the bundled teacher (Qwen2.5-Coder-0.5B on vLLM, 192 new tokens) on chain_sum prompts of three
    difficulties. Adaptive sampling (first_n 4, until_kept 2, max_n 16) runs first and buys its samples live; a
    fixed n=16 in the same run directory then tops the cache up. Sample i of a prompt is the same cache entry either
    way, so the comparison is paired: the filter stage verifies all 16 samples of every prompt once, and each
    method is scored on the samples it bought; the other settings replay their rounds on the same cache. The
    per-prompt pass rates at n=16 are written down: the measured distribution (a) draws from.
(a) simulated, at scale: a local OpenAI-compatible server that answers each of 5,000 prompts right with a
    probability drawn from (b)'s measured pass rates; fixed n=16 and each adaptive setting, every one verified by
    the same filters.
(c) the quickstart with the one setting `generate.sampling.adaptive.enabled=true` (the defaults: first_n 2,
    until_kept 2, max_n 16), its generate stage alone in runs/quickstart-adaptive: what it bought against a fixed n=16 and
    against the quickstart's own n=4, whose samples are the first 4 of each prompt (so scored on the same run).
Writes bench/results/adaptive.json (a, b) and bench/results/adaptive_quickstart.json (c).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULT = REPO / "bench" / "results" / "adaptive.json"
ADAPTIVE = {"enabled": True, "first_n": 4, "until_kept": 2, "max_n": 16}  # the live run of (b)
DEFAULTS = {"enabled": True, "first_n": 2, "until_kept": 2, "max_n": 16}  # sampling.adaptive's defaults
# Other settings, side by side: prop_to_difficulty, and giving up prompts with nothing verified after 8 samples
# (with room to 32 for those with one verified; the real run replays settings within its 16 samples per prompt).
VARIANTS = {"adaptive_first_2": DEFAULTS,
            "adaptive_prop_to_difficulty": {**DEFAULTS, "policy": "prop_to_difficulty"},
            "adaptive_give_up_8": {**DEFAULTS, "give_up_after": 8},
            "adaptive_give_up_8_max_32": {**DEFAULTS, "give_up_after": 8, "max_n": 32}}
METHODS = ["fixed_16", "adaptive_first_4", *VARIANTS]
# chain_sum settings: the quickstart's (easy), a middle one, and reasoning-gym's own default range (hard)
DIFFICULTIES = {"easy": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
                "medium": {"min_terms": 3, "max_terms": 4, "min_digits": 2, "max_digits": 3},
                "hard": {"min_terms": 5, "max_terms": 6, "min_digits": 3, "max_digits": 4}}
HARD = 0.2  # a prompt whose true pass rate is below this is hard


def generate(out: Path, prompts: Path, teacher: dict, sampling: dict) -> dict:
    from factory.config.stages import GenerateConfig
    from factory.stages import generate as stage

    cfg = GenerateConfig.model_validate({"out": str(out), "prompts": {"source": str(prompts)}, "teacher": teacher,
                                         "sampling": sampling, "progress": False})
    return stage.run(cfg).to_json()


def verified(run: Path, max_tokens: int) -> dict[str, list[bool]]:
    """The filter stage over a run with the filters adaptive sampling verifies with: per prompt, each sample's
    verdict in sample order."""
    from factory.config.sampling import VERIFY_FILTERS
    from factory.filters.config import FilterConfig
    from factory.stages import filter as stage
    from factory.storage.shards import read_table

    stage.run(FilterConfig(run_dir=str(run), order=VERIFY_FILTERS, length={"max_tokens": max_tokens},
                           progress=False))
    out: dict[str, list[bool]] = defaultdict(list)
    rows = []
    for part in ("kept", "rejected"):
        if (run / "filtered" / part / "manifest.json").exists():
            rows += read_table(run / "filtered" / part).select(["prompt_id", "sample_index", "kept"]).to_pylist()
    for r in sorted(rows, key=lambda r: (r["prompt_id"], r["sample_index"])):
        out[r["prompt_id"]].append(bool(r["kept"]))
    return out


def score(bought: dict[str, int], verdicts: dict[str, list[bool]], rates: dict[str, float]) -> dict:
    """One method: it bought `bought[p]` samples of prompt p (the first ones); verdicts say which verified."""
    got = {p: sum(verdicts[p][: bought[p]]) for p in bought}
    hard = [p for p in bought if rates[p] < HARD]
    return {"completions": sum(bought.values()), "prompts": len(bought),
            "prompts_with_2_verified": sum(v >= 2 for v in got.values()),
            "prompts_with_1_verified": sum(v >= 1 for v in got.values()),
            "verified_traces": sum(got.values()), "hard_prompts": len(hard),
            "hard_with_1_verified": sum(got[p] >= 1 for p in hard),
            "hard_with_2_verified": sum(got[p] >= 2 for p in hard),
            "hard_verified_traces": sum(got[p] for p in hard)}


def per_prompt_counts(run: Path) -> dict[str, int]:
    from factory.storage.shards import read_table

    return dict(Counter(read_table(run / "traces").column("prompt_id").to_pylist()))


def real(n_prompts: int, work: Path) -> dict:
    import reasoning_gym

    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    with open(prompts, "w") as f:
        per = n_prompts // len(DIFFICULTIES)
        for level, args in DIFFICULTIES.items():
            for i, entry in enumerate(reasoning_gym.create_dataset("chain_sum", size=per, seed=7, **args)):
                f.write(json.dumps({"problem": entry["question"], "answer": str(entry["answer"]), "task": "math",
                                    "id": f"{level}-{i}"}) + "\n")
    teacher = {"engine": "vllm", "model": "qwen2.5-coder-0.5b"}
    run = work / "run"
    adaptive = generate(run, prompts, teacher, {"n": 16, "max_tokens": 192, "adaptive": {
        **ADAPTIVE, "settings": {"length": {"max_tokens": 192}}}})
    bought = per_prompt_counts(run)
    fixed = generate(run, prompts, teacher, {"n": 16, "max_tokens": 192})
    verdicts = verified(run, 192)
    rates = {p: sum(v) / len(v) for p, v in verdicts.items()}
    out = {"prompts": len(rates), "difficulties": DIFFICULTIES, "max_tokens": 192,
           "adaptive_generation_seconds": adaptive.get("generation_seconds"),
           "fixed_topup_generation_seconds": fixed.get("generation_seconds"),
           "adaptive_stats": adaptive["adaptive"],
           "fixed_16": score({p: 16 for p in rates}, verdicts, rates),
           "adaptive_first_4": score(bought, verdicts, rates),
           "pass_rates": sorted(round(r, 4) for r in rates.values())}
    for name, settings in VARIANTS.items():  # replayed from the cache: every sample they want is in it
        if settings["max_n"] <= 16:
            generate(run, prompts, teacher, {"n": 16, "max_tokens": 192, "adaptive": {
                **settings, "settings": {"length": {"max_tokens": 192}}}})
            out[name] = score(per_prompt_counts(run), verdicts, rates)
    return out


def simulated(pass_rates: list[float], n_prompts: int, work: Path) -> dict:
    from tests.fakes.openai_server import FakeOpenAI

    rng = random.Random(0)
    problems = {f"Problem {i}: what is {i} + 0?": (str(i), rng.choice(pass_rates)) for i in range(n_prompts)}
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"problem": p, "answer": a}) + "\n" for p, (a, _) in problems.items()))
    server = FakeOpenAI(correct=problems, seed=1)
    url = server.start()
    teacher = {"engine": "openai", "model": "fake-teacher", "base_url": url, "concurrency": 64}
    out = {"prompts": n_prompts, "rates_drawn_from": "real.pass_rates"}
    try:
        runs = {"fixed_16": {"n": 16}, "adaptive_first_4": {"n": 16, "adaptive": ADAPTIVE},
                **{name: {"n": 16, "adaptive": v} for name, v in VARIANTS.items()}}
        for name, sampling in runs.items():
            run = work / name
            stats = generate(run, prompts, teacher, {**sampling, "max_tokens": 256})
            out[name] = score(per_prompt_counts(run), verified(run, 256), _true_rates(run, problems))
            if "adaptive" in stats:
                out[name]["rounds"] = [r["prompts"] for r in stats["adaptive"]["rounds"]]
    finally:
        server.stop()
    return out


def _true_rates(run: Path, problems: dict[str, tuple[str, float]]) -> dict[str, float]:
    from factory.storage.shards import read_table

    t = read_table(run / "traces").select(["prompt_id", "problem"]).to_pylist()
    return {r["prompt_id"]: problems[r["problem"]][1] for r in t}


def quickstart() -> dict:
    """(c): the quickstart's generate stage with adaptive sampling on; then its n=4 on the same cache (samples 0-3
    of every prompt, mostly cached already) so both are scored by the same verdicts."""
    from factory.pipeline import load_pipeline
    from factory.stages import generate as stage

    p = load_pipeline(str(REPO / "pipelines" / "quickstart.yaml"),
                      ["run_dir=runs/quickstart-adaptive", "generate.sampling.adaptive.enabled=true"])
    g = p.configs["generate"]
    stats = stage.run(g).to_json()
    bought = per_prompt_counts(Path(g.out))
    plain = load_pipeline(str(REPO / "pipelines" / "quickstart.yaml"), ["run_dir=runs/quickstart-adaptive"])
    topup = stage.run(plain.configs["generate"]).to_json()
    verdicts = verified(Path(g.out), g.sampling.max_tokens)
    got = {pid: sum(v[: bought[pid]]) for pid, v in verdicts.items()}
    four = {pid: sum(v[:4]) for pid, v in verdicts.items()}
    return {"command": "factory run pipelines/quickstart.yaml --set generate.sampling.adaptive.enabled=true",
            "prompts": len(verdicts), "adaptive": stats["adaptive"],
            "generation_seconds": stats.get("generation_seconds"),
            "topup_to_n4_seconds": topup.get("generation_seconds"),
            "samples_adaptive": sum(bought.values()), "samples_fixed_4": 4 * len(verdicts),
            "samples_fixed_16": 16 * len(verdicts),
            "with_2_verified_adaptive": sum(v >= 2 for v in got.values()),
            "with_2_verified_fixed_4": sum(v >= 2 for v in four.values()),
            "with_1_verified_adaptive": sum(v >= 1 for v in got.values()),
            "with_1_verified_fixed_4": sum(v >= 1 for v in four.values()),
            "verified_adaptive": sum(got.values()), "verified_fixed_4": sum(four.values())}


def table(results: dict) -> None:
    for part in ("real", "simulated"):
        r = results.get(part)
        if not r:
            continue
        print(f"\n{part}: {r['prompts']} prompts")
        methods = [m for m in METHODS if m in r]
        print(f"{'':26}" + "".join(f"{m.replace('adaptive_', ''):>20}" for m in methods))
        for key in ("completions", "prompts_with_2_verified", "prompts_with_1_verified", "verified_traces",
                    "hard_prompts", "hard_with_1_verified", "hard_with_2_verified", "hard_verified_traces"):
            print(f"{key:26}" + "".join(f"{r[m][key]:>20,}" for m in methods))
        print(f"{'share of fixed_16':26}" + "".join(
            f"{r[m]['completions'] / r['fixed_16']['completions']:>20.1%}" for m in methods))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", type=int, default=60, help="chain_sum prompts for the real run (a third per level)")
    ap.add_argument("--sim", type=int, default=5000, help="prompts for the simulated run")
    ap.add_argument("--skip-real", action="store_true", help="reuse the last real run's pass rates")
    ap.add_argument("--work", default="/tmp/bench-adaptive", help="run directories go here")
    ap.add_argument("--quickstart", action="store_true", help="(c) only")
    args = ap.parse_args()
    if args.quickstart:
        q = quickstart()
        (RESULT.parent / "adaptive_quickstart.json").write_text(json.dumps(q, indent=2) + "\n")
        print(json.dumps({k: v for k, v in q.items() if k != "adaptive"}, indent=2))
        return
    work = Path(args.work)
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    if not args.skip_real:  # with the real run's cache still in --work, this replays it (no sample bought)
        live = {k: (results.get("real") or {}).get(k) for k in ("adaptive_generation_seconds",
                                                                  "fixed_topup_generation_seconds")}
        results["real"] = real(args.real, work / "real")
        for k, v in live.items():
            if not results["real"].get(k) and v:
                results["real"][k] = v  # seconds of the live run, kept through a replay
    results["simulated"] = simulated(results["real"]["pass_rates"], args.sim, work / "sim")
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
    table(results)


if __name__ == "__main__":
    main()
