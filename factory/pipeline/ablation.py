"""An ablation file (issue 25): a base pipeline, the eval that decides, and variants, each a set of overrides in
the `--set` form. Loading it validates every variant as the pipeline it will run, so a bad field is reported
before anything is bought or trained, naming the variant and the field.

    name: quickstart-ablation
    base: pipelines/quickstart.yaml
    decide_by: student-after
    seeds: [42, 7]
    variants:
      - {name: no-correctness, set: {filter.correctness.enabled: false}}
      - {name: one-sample, set: {generate.sampling.n: 1}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from rich.console import Console

from ..config.loader import build, load_yaml
from ..config.strict import Strict
from ..core.errors import FactoryError
from .load import Pipeline, load_pipeline, resolve_model_ref

console = Console(stderr=True)

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a directory name under runs/ablate/NAME/
# what the ablation itself keeps in runs/ablate/NAME/, beside the runs: no variant may be called so
RESERVED = {"base": "reserved for the base", "cache": "the shared sample cache's directory",
            "eval-cache": "the shared eval cache's directory", "results.json": "the ablation's results file",
            "report.md": "the ablation's report", "ablation.png": "the ablation's chart"}
# what makes two runs of the deciding eval one measurement: the same problems, sampled the same way
SAME_EVAL = ("benchmark", "benchmark_path", "limit", "size", "seed", "gym_args", "date_from", "date_to")


class Variant(Strict):
    name: str = Field(..., pattern=NAME, description="The variant's name (its run directory's)")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides of the base pipeline, as "
                                "`factory run --set` takes them: {filter.correctness.enabled: false}")


class AblationConfig(Strict):
    name: str = Field(..., pattern=NAME, description="The ablation's name: runs/ablate/NAME/")
    base: str = Field(..., description="The base pipeline file")
    decide_by: str = Field(..., description="The base's held-out eval whose pass@1 decides (e.g. student-after)")
    seeds: list[int] = Field(default_factory=list, description="Train the base and each variant once per seed "
                             "(distill.seed, grpo.seed); none: the pipeline's own")
    variants: list[Variant] = Field(..., min_length=1, description="What to compare with the base")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"a seed is listed twice: {v}")
        return v

    @field_validator("variants")
    @classmethod
    def _distinct_names(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        for n in names:
            if n in RESERVED or names.count(n) > 1:
                raise ValueError(f"variant name {n!r} is " + RESERVED.get(n, "used twice"))
        for v in variants:
            if not v.set:
                raise ValueError(f"variant {v.name!r} has no `set`: it would be the base again")
            moved = [k for k in v.set if k == "run_dir" or k.endswith(".run_dir")]
            if moved:
                raise ValueError(f"variant {v.name!r} sets {moved[0]}: the ablation places every run "
                                 "(runs/ablate/NAME/VARIANT)")
        return variants


@dataclass
class Ablation:
    path: str
    config: AblationConfig
    root: Path  # runs/ablate/NAME
    runs: dict[tuple[str, int | None], Pipeline]  # (variant or "base", seed) -> its pipeline


def overrides(sets: dict[str, Any]) -> list[str]:
    """A variant's `set` block as `--set` pairs (values as JSON, which YAML reads back unchanged)."""
    return [f"{key}={json.dumps(value)}" for key, value in sets.items()]


def load_ablation(path: str, root: str | Path = "runs/ablate") -> Ablation:
    cfg = build(AblationConfig, load_yaml(path), where=path)
    base_path = Path(cfg.base) if Path(cfg.base).is_absolute() else Path(path).parent / cfg.base
    if not base_path.exists() and Path(cfg.base).exists():
        base_path = Path(cfg.base)  # relative to the working directory, as `factory run` takes it
    out = Path(root) / cfg.name
    runs: dict[tuple[str, int | None], Pipeline] = {}
    for variant in [Variant(name="base"), *cfg.variants]:
        for seed in cfg.seeds or [None]:
            runs[variant.name, seed] = _variant_pipeline(path, cfg, str(base_path), variant, seed, out)
    evals = [name for name, _ in runs["base", (cfg.seeds or [None])[0]].evals]
    if cfg.decide_by not in evals:
        raise FactoryError(f"{path}: field 'decide_by': {cfg.decide_by!r} is not an eval of {cfg.base} "
                           f"(its evals: {', '.join(evals) or 'none'})")
    _check_deciding_eval(path, cfg, runs)
    return Ablation(path, cfg, out, runs)


def _check_deciding_eval(path: str, cfg: AblationConfig, runs: dict[tuple[str, int | None], Pipeline]) -> None:
    """Every run must have the deciding eval, measuring its own trained model on the base's problems, sampled
    alike: else the report would fail after all the training, or compare different things."""
    base = dict(runs["base", (cfg.seeds or [None])[0]].evals)[cfg.decide_by]
    models = set()
    for (variant, _), p in runs.items():
        mine = dict(p.evals).get(cfg.decide_by)
        if mine is None:
            raise FactoryError(f"{path}: variant {variant!r} has no eval {cfg.decide_by!r} (decide_by): its set "
                               "removes it")
        holder = next(i for i in p.instances if i.kind == "eval" and (i.entry or i.name) == cfg.decide_by)
        if mine.model == "student" and p.before(holder.name, "distill") is None:
            raise FactoryError(f"{path}: variant {variant!r} trains no student before {cfg.decide_by} (no distill "
                               "stage): nothing of its own to evaluate")
        models.add(resolve_model_ref(mine.model, p, holder.name, prepare=False))
        for key in (*SAME_EVAL, "model"):
            if getattr(mine, key) != getattr(base, key):
                raise FactoryError(f"{path}: variant {variant!r} changes {cfg.decide_by}.{key} ({getattr(base, key)!r}"
                                   f" -> {getattr(mine, key)!r}): the deciding eval must measure the same thing in "
                                   "every run")
        if _sampled(mine) != _sampled(base):
            raise FactoryError(f"{path}: variant {variant!r} changes how {cfg.decide_by} samples "
                               f"({_sampled(base)} -> {_sampled(mine)}): pass@1 would not be comparable")


    if len(models) == 1:
        console.print(f"[yellow]warning[/]: decide_by {cfg.decide_by!r} evaluates {base.model!r}, the same model "
                      f"({models.pop()}) in every run: the variants cannot differ on it; decide by an eval of the "
                      "trained model (model: student or stage:NAME)")


def _sampled(e) -> dict[str, Any]:
    return {**e.sampling.model_dump(), "template": e.template.model_dump()}


def _shape(instances: list) -> list[tuple[str, str, Any]]:
    """What a pipeline runs, to compare two: each instance's name, kind and config."""
    return [(i.name, i.kind, i.config.model_dump()) for i in instances]


def _variant_pipeline(path: str, cfg: AblationConfig, base: str, variant: Variant, seed: int | None,
                      out: Path) -> Pipeline:
    run_dir = out / (variant.name if seed is None else f"{variant.name}-seed{seed}")
    pairs = [f"run_dir={run_dir}", *overrides(variant.set)]
    try:
        instances = load_pipeline(base, pairs).instances  # the variant's stage names, for the pairs below
        if variant.set and _shape(instances) == _shape(load_pipeline(base, pairs[:1]).instances):
            raise FactoryError(f"its set {variant.set} changes nothing: the base already runs so")
        # one sample cache for every run (a variant buys only the samples no other run has bought), and the seed
        pairs += [f"{i.block}.cache={out / 'cache'}" for i in instances if i.kind == "generate"]
        if seed is not None:
            pairs += [f"{i.block}.seed={seed}" for i in instances if i.kind in ("distill", "grpo")]
        p = load_pipeline(base, pairs)
    except FactoryError as e:
        where = "the base" if variant.name == "base" else f"variant {variant.name!r}"
        raise FactoryError(f"{path}: {where}: {e}") from None
    # one eval cache too: its keys hold each model's content, so the evals every run shares (the student before
    # training, the teacher) sample once, and only the newly trained student is sampled per run
    for inst in p.instances:
        if inst.kind == "eval":
            inst.config = inst.config.model_copy(update={"cache": str(out / "eval-cache")})
    return p
