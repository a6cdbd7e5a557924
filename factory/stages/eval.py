"""`factory eval --model M --benchmark B`: pass@1 over n samples with a 95% CI, pass@k, maj@k.

Generation goes through the same engines, templates and sample cache as `factory generate` (so an interrupted
eval resumes, and a rerun is free); scoring through the same correctness functions as `factory filter`.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr
from rich.console import Console
from rich.table import Table

from ..config.loader import fingerprint, public_dump
from ..config.stages import EvalSettings
from ..core.context import DIRECT, RunContext
from ..core.errors import FactoryError
from ..core.eval_metrics import LENIENT, TOKENS_PER_CORRECT, mean_ci, problem_metrics
from ..core.jsonfiles import write_json_atomic
from ..core.results import StageResult
from ..core.workpool import ordered_map
from ..executors import generate_missing
from ..filters.correctness import CorrectnessParams, correctness_filter, voted_answer
from ..generation.plan import CACHE_FIELDS, make_trace, plan
from ..generation.stats import GenerationStats
from ..sources.benchmarks import load_benchmark
from ..storage.cache import SampleCache
from ..storage.records import Prompt, Trace
from ..storage.rundir import package_versions
from ..teachers import resolve_engine
from .estimates import Cost, Estimate, EstimateContext, eval_estimate

console = Console(stderr=True)


class EvalConfig(EvalSettings):
    """`factory eval`'s config and each eval of a pipeline: the model, the benchmark, sampling, and its scorer."""

    correctness: CorrectnessParams = Field(default_factory=CorrectnessParams, description="The scorer: the "
                                           "correctness filter's settings")

KIND, ORDER = "eval", 60
Config = EvalConfig
OUTPUT_FIELD = "out"
MODEL_FIELDS = ("model",)
BLOCK_HELP = ("A pipeline's `eval:` block is a list of these, each with a `name` (`--set eval.NAME.KEY=V` sets one, "
              "`--set eval.KEY=V` every one); two or more get a `compare` of their results.")


class Result(StageResult):
    """An eval result (RESULTS/LABEL-BENCHMARK.json): the metrics with their 95% CI, and every problem's samples
    and verdicts (what `factory eval --compare` pairs by prompt id)."""

    label: str
    model: str
    engine: str
    benchmark: str
    metrics: dict[str, Any]  # metric -> {mean, ci95}, and the counts (problems, samples_per_problem, ...)
    generation: GenerationStats
    settings: dict[str, Any]
    fingerprint: str
    versions: dict[str, str]
    created_at: str
    seconds: float
    problems: list[dict[str, Any]]
    _path: Path | None = PrivateAttr(default=None)

    def summary(self) -> dict[str, Any]:
        """What a pipeline keeps: where the result is, of what, and each metric with its CI."""
        return {"file": str(self._path), "model": self.model, "benchmark": self.benchmark,
                **{k: v for k, v in self.metrics.items() if isinstance(v, dict)}}

    @classmethod
    def describe(cls, s: dict[str, Any]) -> str:
        m = s.get("pass@1")
        if not m:
            return ""
        return f"pass@1 {m['mean']:.3f}" + (f" ± {m['ci95']:.3f}" if m.get("ci95") is not None else "")


def expand(block: str, entries: Any, run_dir: Path, earlier: list[str], where: str) -> list[tuple[str, str, Any]]:
    """A pipeline's eval block is a list of named evals: one instance each, and one `compare` of their results
    when there are two or more (the first is the reference; `vs` pairs an eval with another). Results go to
    RUN_DIR/eval (a block named otherwise: RUN_DIR/eval/BLOCK); a gym eval after a stage that trained on gym
    prompts excludes every prompt this run generated from."""
    from ..config.loader import build
    from ..config.stages import check_path_name
    from ..storage.rundir import RunDir
    from . import compare

    if not isinstance(entries, list) or not entries:
        raise FactoryError(f"{where}: expected a list of evaluations (name, model, benchmark, ...)")
    out_dir = RunDir(run_dir).eval / ("" if block == KIND else block)
    made: list[tuple[str, str, Any]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise FactoryError(f"{where}: eval[{i}]: expected a mapping of settings, got {entry!r:.60}")
        entry = dict(entry)
        name = str(entry.pop("name", f"eval{i + 1}"))
        try:
            check_path_name(name)
        except ValueError as e:
            raise FactoryError(f"{where}: eval[{i}]: name {e}") from None
        if name in (n for n, _, _ in made) or name == compare.KIND:
            raise FactoryError(f"{where}: eval[{i}]: the name {name!r} is "
                               + ("used twice" if name != compare.KIND else "the comparison's"))
        entry.setdefault("label", name)
        entry.setdefault("out", str(out_dir))
        if any(k in ("generate", "grpo") for k in earlier) and str(entry.get("benchmark", "")).startswith("gym:"):
            runs = [str(r) for r in entry.get("exclude_runs") or []]  # held out of this run's own prompts too
            entry["exclude_runs"] = runs + [str(run_dir)] * (str(run_dir) not in runs)
        made.append((name, KIND, build(EvalConfig, entry, where=f"{where} eval[{i}] ({name})")))
    names = [n for n, _, _ in made]
    for i, (name, _, e) in enumerate(made):
        if e.vs is not None and (e.vs == name or e.vs not in names):
            raise FactoryError(f"{where}: eval[{i}] ({name}): field 'vs': {e.vs!r} is not another eval of this "
                               f"stage (its evals: {', '.join(names)})")
    if len(made) >= 2:
        files = [str(result_path(e)) for _, _, e in made]
        pairs = [(names.index(e.vs), names.index(n)) for n, _, e in made if e.vs is not None]
        made.append((compare.KIND, compare.KIND, compare.Config(
            files=files, png=str(Path(files[0]).parent / "compare.png"),
            md=str(Path(files[0]).parent / "summary.md"), pairs=pairs)))
    return made


def resolve(cfg: EvalConfig) -> EvalConfig:
    """The model is the teacher that samples (its engine decided when `auto`)."""
    engine = resolve_engine(cfg.teacher.engine, cfg.model)
    return cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"model": cfg.model, "engine": engine})})


def up_to_date(cfg: EvalConfig) -> bool:
    """Each result's file name comes from its label (the eval's name), never from the model: nothing to resolve."""
    return result_path(cfg).exists()


def estimate(cfg: EvalConfig, ctx: EstimateContext) -> Estimate:
    s = cfg.sampling
    what = (f"{cfg.model} on {cfg.benchmark}, n={s.n} (pass@1 over {s.n}; "
            f"{', '.join(f'pass@{k}, maj@{k}' for k in cfg.ks if 1 < k <= s.n) or 'no pass@k'}), "
            f"T={s.temperature}, top_p={s.top_p}, max_tokens={s.max_tokens}")
    return Estimate(what=what, cost=Cost(**eval_estimate(cfg, ctx.plan)))


def in_pipeline(cfg: EvalConfig, ctx: RunContext) -> Result:
    """On a local vLLM engine, in a process of its own (it claims most of a GPU): the next stage gets it back."""
    cfg = resolve(cfg)
    if cfg.teacher.engine != "vllm":
        return run(cfg, ctx)
    from ..core.processes import run_command

    path = result_path(cfg)
    run_command("eval", cfg, path.with_name(f".{path.stem}.launch.yaml"), ctx)
    return read_result(path)


def read_result(path: Path) -> Result:
    result = Result.read(path, "eval result")
    result._path = path
    return result


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def default_label(model: str) -> str:
    """`runs/x/student/smollm2-135m/final` -> `smollm2-135m-final`; `Qwen/Qwen2.5-7B` -> `Qwen2.5-7B`."""
    parts = Path(model).parts
    if len(parts) >= 2 and (parts[-1] == "final" or parts[-1].startswith("checkpoint-")):
        return slug(f"{parts[-2]}-{parts[-1]}")
    return slug(parts[-1] if parts else model)


def result_path(cfg: EvalConfig) -> Path:
    bench = Path(cfg.benchmark).stem if Path(cfg.benchmark).suffix else cfg.benchmark
    return Path(cfg.out) / f"{cfg.label or default_label(cfg.model)}-{slug(bench)}.json"


def check_model_loads(model: str) -> None:
    """A local checkpoint that cannot load fails here, in one line, before an engine spends minutes starting."""
    from ..storage.models import BUNDLED, resolve_model

    path = Path(resolve_model(model)) if model in BUNDLED else Path(model)
    if not path.exists():
        if model.count("/") == 1 and not model.startswith((".", "/")):
            return  # a Hub id: the engine downloads it
        raise FactoryError(f"{model}: no such checkpoint directory")
    if not (path / "config.json").exists():
        raise FactoryError(f"{model}: not a transformers checkpoint (no config.json)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise FactoryError(f"{model}: the checkpoint has no weights (*.safetensors or *.bin)")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except Exception as e:  # transformers raises several types for a broken config
        raise FactoryError(f"{model}: the checkpoint does not load: {type(e).__name__}: {e}") from None


def run(cfg: EvalConfig, ctx: RunContext = DIRECT) -> Result:
    started = time.perf_counter()
    prompts = load_benchmark(cfg)  # an unknown benchmark or a file without answers stops here
    if not prompts:
        raise FactoryError(f"{cfg.benchmark}: no problems left to evaluate")
    cfg = resolve(cfg)
    engine = cfg.teacher.engine
    if engine in ("vllm", "hf"):
        check_model_loads(cfg.model)  # llamacpp checks its GGUF as it starts (a .gguf file is no checkpoint)
    elif engine == "openai":
        from ..teachers.openai_compat import preflight

        preflight(cfg.teacher)  # a refused key or a wrong URL: one line, before the cache (and its lock) exists
    work = plan(cfg, prompts)
    with SampleCache(Path(cfg.cache) if cfg.cache else Path(cfg.out) / "cache", CACHE_FIELDS) as cache:
        bought = generate_missing(cfg, work, cache)
        traces = [[make_trace(cfg, p, msgs, i, cache.get(k), bought.errors.get(k)) for i, k in enumerate(keys)]
                  for p, msgs, keys in work]
    problems = score_all(cfg, prompts, traces)
    result = Result(label=cfg.label or default_label(cfg.model), model=cfg.model, engine=engine,
                    benchmark=cfg.benchmark, metrics=summarise(problems, cfg), generation=bought.stats,
                    settings=public_dump(cfg), fingerprint=fingerprint(cfg), versions=package_versions(),
                    created_at=datetime.now(timezone.utc).isoformat(),
                    seconds=round(time.perf_counter() - started, 1), problems=problems)
    path = result_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)  # the cache may live elsewhere (cfg.cache)
    write_json_atomic(path, result.to_json())
    result._path = path
    print_metrics(result, path)
    return result


def score_problem(prompt: Prompt, rows: list[dict[str, Any]], params) -> list[dict[str, Any]]:
    """Every sample of one problem: its verdict and the answer it votes for; for math, its lenient verdict too (a
    small policy's early gain can be format alone, 1-shot RLVR 2025: an answer without \\boxed{} counts by its
    last number)."""
    lenient = None if params.lenient or prompt.task in ("code", "choice") else \
        params.model_copy(update={"lenient": True})
    out = []
    for row in rows:
        sample = _sample(row)
        if row.get("error"):
            sample.update(correct=False, reason="generation_error", answer=None)
        else:
            v = correctness_filter(row, prompt, params)
            sample.update(correct=v.status == "pass", reason=v.reason,
                          answer=voted_answer(row, prompt, params))
        if lenient is not None:
            sample["correct_lenient"] = sample["correct"] or (
                not row.get("error") and correctness_filter(row, prompt, lenient).status == "pass")
        out.append(sample)
    return out


def _sample(row: dict[str, Any]) -> dict[str, Any]:
    return {"index": row["sample_index"], "completion_tokens": row.get("completion_tokens"),
            "truncated": bool(row.get("truncated")), "error": row.get("error")}


def _hung(task: tuple) -> list[dict[str, Any]]:
    _, rows, _ = task
    return [{**_sample(r), "correct": False, "reason": "scoring_timeout", "answer": None} for r in rows]


def score_all(cfg: EvalConfig, prompts: list[Prompt], traces: list[list[Trace]]) -> list[dict[str, Any]]:
    from ..generation.progress import StageProgress

    tasks = [(p, [t.to_row() for t in ts], cfg.correctness) for p, ts in zip(prompts, traces)]
    workers = min(cfg.workers or os.cpu_count() or 1, len(tasks))
    deadline = 60 + cfg.sampling.n * max(cfg.correctness.code_timeout_s, cfg.correctness.timeout_s) * 2
    results = (map(lambda t: score_problem(*t), tasks) if workers <= 1
               else ordered_map(score_problem, tasks, workers, deadline, _hung))
    problems = []
    with StageProgress("score", len(tasks), cfg.progress) as advance:
        for prompt, samples in zip(prompts, results):
            correct = [s["correct"] for s in samples]
            answers = [s["answer"] for s in samples]
            metrics = problem_metrics(correct, answers, cfg.ks, majority=prompt.task != "code")
            if samples and any("correct_lenient" in s for s in samples):  # a hung problem's samples: wrong
                metrics[LENIENT] = sum(s.get("correct_lenient", False) for s in samples) / len(samples)
            right = [s["completion_tokens"] for s in samples if s["correct"] and s["completion_tokens"] is not None]
            if right:
                metrics[TOKENS_PER_CORRECT] = sum(right) / len(right)
            problems.append({"prompt_id": prompt.prompt_id, "task": prompt.task, "problem": prompt.problem[:1000],
                             "reference": prompt.reference_answer, "metrics": metrics, "samples": samples})
            advance(1)
    return problems


def summarise(problems: list[dict[str, Any]], cfg: EvalConfig) -> dict[str, Any]:
    keys = list(dict.fromkeys(k for p in problems for k in p["metrics"]))  # tokens_per_correct: solved ones only
    out: dict[str, Any] = {"problems": len(problems), "samples_per_problem": cfg.sampling.n}
    for key in keys:
        mean, half = mean_ci([p["metrics"][key] for p in problems if key in p["metrics"]])
        out[key] = {"mean": mean, "ci95": half}
    samples = [s for p in problems for s in p["samples"]]
    tokens = [s["completion_tokens"] for s in samples if s["completion_tokens"] is not None]
    out["mean_completion_tokens"] = sum(tokens) / len(tokens) if tokens else None
    out["truncated_share"] = sum(s["truncated"] for s in samples) / len(samples) if samples else 0.0
    out["generation_errors"] = sum(bool(s["error"]) for s in samples)
    return out


def print_metrics(result: Result, path: Path) -> None:
    m = result.metrics
    table = Table(title=f"{result.label} on {result.benchmark}: {m['problems']} problems × "
                        f"{m['samples_per_problem']} samples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for key, v in m.items():
        if isinstance(v, dict):
            table.add_row(key, f"{v['mean']:.3f}", "n/a" if v["ci95"] is None else f"± {v['ci95']:.3f}")
    table.add_row("mean completion tokens", "-" if m["mean_completion_tokens"] is None
                  else f"{m['mean_completion_tokens']:.0f}", "")
    table.add_row("truncated", f"{m['truncated_share']:.1%}", "")
    if m["generation_errors"]:
        table.add_row("generation errors", str(m["generation_errors"]), "")
    console.print(table)
    s = result.settings["sampling"]
    console.print(f"sampling: n={s['n']}, temperature={s['temperature']}, top_p={s['top_p']}, max_tokens="
                  f"{s['max_tokens']} ({result.engine}); results: {path}", soft_wrap=True, highlight=False)
