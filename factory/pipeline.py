"""Pipeline files: which stages run, and each stage's config, validated up front against the stage's own model.

```yaml
name: quickstart
run_dir: runs/quickstart
stages: [generate, filter, card, distill, eval]
generate: {prompts: {source: "gym:chain_sum", size: 12}, teacher: {engine: vllm, model: qwen2.5-coder-0.5b}}
filter: {}
distill: {student: smollm2-135m}
eval:
  - {name: student-before, model: student-base, benchmark: "gym:chain_sum"}
  - {name: student-after, model: student, benchmark: "gym:chain_sum"}
```
In eval entries, `model` may name `teacher` (the generate teacher), `student-base` (the distill student before
training) or `student` (its trained checkpoint). Gym evals exclude every prompt this run generated from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .config import (
    CardConfig,
    DistillConfig,
    EvalConfig,
    FilterConfig,
    GenerateConfig,
    build,
    load_yaml,
    parse_overrides,
)
from .errors import FactoryError

STAGES = ("generate", "filter", "card", "distill", "eval")
MODELS = {"generate": GenerateConfig, "filter": FilterConfig, "card": CardConfig, "distill": DistillConfig}
MODEL_REFS = ("teacher", "student", "student-base")


@dataclass
class Pipeline:
    path: str
    name: str
    run_dir: Path
    stages: list[str]
    configs: dict[str, BaseModel] = field(default_factory=dict)
    evals: list[tuple[str, EvalConfig]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)


def _inject(stage: str, section: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Every stage works in the pipeline's run directory."""
    section = copy.deepcopy(section or {})
    key = {"generate": "out", "eval": "out"}.get(stage, "run_dir")
    section.setdefault(key, str(run_dir / "eval") if stage == "eval" else str(run_dir))
    return section


def load_pipeline(path: str, overrides: list[str] | None = None) -> Pipeline:
    doc = load_yaml(path)
    for key, value in parse_overrides(overrides or []).items():
        doc[key] = _merge(doc.get(key), value)
    unknown = set(doc) - {"name", "run_dir", "stages", "plan", *STAGES}
    if unknown:
        raise FactoryError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected name, run_dir, stages, "
                           f"plan, {', '.join(STAGES)})")
    stages = doc.get("stages") or [s for s in STAGES if s in doc]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise FactoryError(f"{path}: stages: unknown stage {bad[0]!r} (expected {', '.join(STAGES)})")
    run_dir = Path(doc.get("run_dir") or f"runs/{doc.get('name') or Path(path).stem}")
    p = Pipeline(path=str(path), name=doc.get("name") or Path(path).stem, run_dir=run_dir,
                 stages=[s for s in STAGES if s in stages], raw=doc, plan=doc.get("plan") or {})
    for stage in p.stages:
        if stage == "eval":
            p.evals = _evals(path, doc.get("eval") or [], run_dir, "generate" in doc)
        else:
            p.configs[stage] = build(MODELS[stage], _inject(stage, doc.get(stage), run_dir), where=f"{path} {stage}")
    return p


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def _evals(path: str, entries: list[dict[str, Any]], run_dir: Path, has_generate: bool) -> list[tuple[str, EvalConfig]]:
    if not isinstance(entries, list) or not entries:
        raise FactoryError(f"{path}: eval: expected a list of evaluations (name, model, benchmark, ...)")
    out, names = [], set()
    for i, entry in enumerate(entries):
        entry = dict(entry)
        name = str(entry.pop("name", f"eval{i + 1}"))
        if name in names:
            raise FactoryError(f"{path}: eval[{i}]: the name {name!r} is used twice")
        names.add(name)
        section = _inject("eval", entry, run_dir)
        section.setdefault("label", name)
        if has_generate and str(section.get("benchmark", "")).startswith("gym:"):
            section.setdefault("exclude_runs", [str(run_dir)])
        out.append((name, build(EvalConfig, section, where=f"{path} eval[{i}] ({name})")))
    return out


def resolve_model_ref(ref: str, p: Pipeline) -> str:
    """`teacher`, `student`, `student-base` -> what they mean in this pipeline; anything else is itself."""
    if ref not in MODEL_REFS:
        return ref
    if ref == "teacher":
        if "generate" not in p.configs:
            raise FactoryError(f"{p.path}: eval model 'teacher' needs a generate stage")
        return p.configs["generate"].teacher.model
    if "distill" not in p.configs:
        raise FactoryError(f"{p.path}: eval model {ref!r} needs a distill stage")
    from train.students import final_dir, model_path, resolve_student

    distill = p.configs["distill"]
    if ref == "student-base":
        return model_path(resolve_student(distill.student))
    return str(final_dir(distill))
