"""Pipeline files: which stage instances run, in order, and each one's config, validated up front against its
kind's own model.

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
The same kind may run more than once under names of its own, each with its own config block (keyed by the
name), fingerprint and state: `stages: [generate, filter, {name: sft1, kind: distill}, {name: sft2, kind:
distill, run_dir: runs/x/round2}]`. A named instance may set its own `run_dir`; a named distill writes to
RUN_DIR/student/NAME and a named eval to RUN_DIR/eval/NAME unless its block says otherwise.

Model fields (an eval's `model`, generate's `teacher.model`, distill's `student`, grpo's `model`) may name
`stage:NAME`, the model trained by the earlier instance NAME (a distill or a grpo), or `teacher` (the generate
teacher), `student-base` (the distill student before training) or `student` (its trained checkpoint), from the
nearest such stage before. Gym evals exclude every prompt this run generated from.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.loader import build, load_yaml, parse_overrides
from ..core.errors import FactoryError
from ..storage.rundir import RunDir
from .estimates import PlanAssumptions
from .registry import KINDS, STAGES

MODEL_REFS = ("teacher", "student", "student-base")
STAGE_REF = "stage:"


@dataclass
class StageInstance:
    name: str  # unique in the pipeline: the key of its config block and of its state
    kind: str  # a key of STAGES
    config: Any  # the kind's config model; for eval, a list of (name, EvalConfig)
    run_dir: Path


@dataclass
class Pipeline:
    path: str
    name: str
    run_dir: Path
    instances: list[StageInstance]
    raw: dict[str, Any] = field(default_factory=dict)
    plan: PlanAssumptions = field(default_factory=PlanAssumptions)

    @property
    def stages(self) -> list[str]:
        return [i.name for i in self.instances]

    @property
    def configs(self) -> dict[str, Any]:
        """Instance name -> config, for every instance but evals."""
        return {i.name: i.config for i in self.instances if i.kind != "eval"}

    @property
    def evals(self) -> list[tuple[str, Any]]:
        return [e for i in self.instances if i.kind == "eval" for e in i.config]

    def instance(self, name: str) -> StageInstance:
        return next(i for i in self.instances if i.name == name)

    def before(self, name: str, kind: str) -> StageInstance | None:
        """The nearest instance of `kind` before the instance `name` (the one its references mean)."""
        found = None
        for i in self.instances:
            if i.name == name:
                return found
            if i.kind == kind:
                found = i
        return found


def load_pipeline(path: str, overrides: list[str] | None = None) -> Pipeline:
    doc = load_yaml(path)
    for key, value in parse_overrides(overrides or []).items():
        doc[key] = _merge(doc.get(key), value)
    for key in ("name", "run_dir"):
        if key in doc and not isinstance(doc[key], str):
            raise FactoryError(f"{path}: {key}: expected a string, got {doc[key]!r}")
    run_dir = Path(doc.get("run_dir") or f"runs/{doc.get('name') or Path(path).stem}")
    entries = _entries(path, doc)
    if not entries:
        raise FactoryError(f"{path}: no stages: list them under `stages:` or give a stage's block "
                           f"({', '.join(KINDS)})")
    unknown = set(doc) - {"name", "run_dir", "stages", "plan", *KINDS, *(n for n, _, _ in entries)}
    if unknown:
        raise FactoryError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected name, run_dir, stages, "
                           f"plan, {', '.join(KINDS)} or a stage's name)")
    p = Pipeline(path=str(path), name=doc.get("name") or Path(path).stem, run_dir=run_dir, instances=[], raw=doc,
                 plan=build(PlanAssumptions, doc.get("plan") or {}, where=f"{path} plan"))
    for name, kind, own_dir in entries:
        where = f"{path} {name}" if name == kind else f"{path} {name} ({kind})"
        inst_dir = Path(own_dir) if own_dir else run_dir
        section = _defaults(name, kind, copy.deepcopy(doc.get(name) or ({} if kind != "eval" else [])), inst_dir)
        config = (_evals(path, section, inst_dir, any(i.kind in ("generate", "grpo") for i in p.instances))
                  if kind == "eval" else build(STAGES[kind].config_model, section, where=where))
        p.instances.append(StageInstance(name, kind, config, inst_dir))
        for dotted in STAGES[kind].model_fields:
            _check_stage_ref(p, name, dotted, _get(config, dotted))
    for inst in p.instances:
        for name, e in inst.config if inst.kind == "eval" else ():
            _check_stage_ref(p, inst.name, f"{name}: model", e.model)
    _verify_as_the_filter_does(p)
    return p


def _verify_as_the_filter_does(p: Pipeline) -> None:
    """Adaptive sampling verifies samples with the filter stage's own settings, unless it names its own."""
    filt = next((i.config for i in p.instances if i.kind == "filter"), None)
    for inst in p.instances:
        if inst.kind != "generate" or filt is None:
            continue
        a = inst.config.sampling.adaptive
        if a.enabled and not a.settings:
            settings = {n: getattr(filt, n).model_dump(mode="json") for n in a.filters}
            sampling = inst.config.sampling.model_copy(update={"adaptive": a.model_copy(update={"settings": settings})})
            inst.config = inst.config.model_copy(update={"sampling": sampling})


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _with(cfg: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    return cfg.model_copy(update={head: _with(getattr(cfg, head), rest, value) if rest else value})


def _check_stage_ref(p: Pipeline, at: str, field: str, value: Any) -> None:
    if not (isinstance(value, str) and value.startswith(STAGE_REF)):
        return
    target = value[len(STAGE_REF):]
    earlier = {i.name: i for i in p.instances[: p.stages.index(at)]}
    if target not in earlier or STAGES[earlier[target].kind].trained_model is None:
        trained = [n for n, i in earlier.items() if STAGES[i.kind].trained_model] or ["none"]
        raise FactoryError(f"{p.path}: {at}: {field}: {value!r} names no earlier training stage (earlier distill "
                           f"or grpo stages: {', '.join(trained)})")


def _entries(path: str, doc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(name, kind, run_dir) per stage instance. Without `stages`, every kind that has a block, in the usual
    order; a list of plain kinds is put in that order too (as it always was)."""
    listed = doc.get("stages") or [k for k in KINDS if k in doc]
    if not isinstance(listed, list):
        raise FactoryError(f"{path}: stages: expected a list of stage kinds or {{name, kind}} entries")
    out = []
    for i, entry in enumerate(listed):
        if isinstance(entry, str):
            entry = {"name": entry, "kind": entry}
        if not isinstance(entry, dict) or set(entry) - {"name", "kind", "run_dir"}:
            raise FactoryError(f"{path}: stages[{i}]: expected a kind or {{name, kind, run_dir}}, got {entry!r}")
        kind = entry.get("kind") or entry.get("name")
        name = entry.get("name") or kind
        if not isinstance(entry.get("run_dir", ""), str):
            raise FactoryError(f"{path}: stages[{i}]: run_dir: expected a string, got {entry['run_dir']!r}")
        if kind not in KINDS:
            raise FactoryError(f"{path}: stages: unknown stage {kind!r} (expected {', '.join(KINDS)})")
        if name in (n for n, _, _ in out):
            raise FactoryError(f"{path}: stages: the name {name!r} is used twice (name the instances apart)")
        _check_name(path, f"stages[{i}]", str(name))
        out.append((str(name), kind, entry.get("run_dir")))
    if all(isinstance(e, str) for e in listed):
        out.sort(key=lambda e: KINDS.index(e[1]))
    return out


def _check_name(path: str, where: str, name: str) -> None:
    from ..config.stages import check_path_name

    try:
        check_path_name(name)
    except ValueError as e:
        raise FactoryError(f"{path}: {where}: name {e}") from None


def _defaults(name: str, kind: str, section: Any, run_dir: Path) -> Any:
    """Every instance works in its run directory; named distills and evals get their own output places."""
    if kind == "eval":
        out = RunDir(run_dir).eval / ("" if name == kind else name)
        return [{**e, "out": e.get("out", str(out))} if isinstance(e, dict) else e for e in section] \
            if isinstance(section, list) else section
    if not isinstance(section, dict):
        raise FactoryError(f"{name}: expected a mapping of settings, got {type(section).__name__}")
    section.setdefault(STAGES[kind].dir_key, str(run_dir))
    if STAGES[kind].default_output and name != kind:
        section.setdefault("output_dir", str(STAGES[kind].default_output(run_dir, name)))
    return section


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    if isinstance(base, list) and isinstance(over, dict) and base and all(isinstance(e, dict) for e in base):
        return _merge_named(base, over)
    return over


def _merge_named(entries: list[dict], over: dict) -> list[dict]:
    names = {str(e.get("name")) for e in entries if e.get("name") is not None}
    return [_merge(e, entry_override(over, names, str(e.get("name")))) for e in entries]


def entry_override(over: dict, names: set[str], name: str) -> Any:
    """What `--set` gives the list entry `name`: `eval.size=80` reaches every eval, `eval.NAME.size=80` the one
    named; a key that names an entry is that entry (the quickstart's eval named `teacher` is not every eval's
    `teacher` field)."""
    shared = {k: v for k, v in over.items() if k not in names}
    return _merge(shared, over.get(name) or {})


def _evals(path: str, entries: Any, run_dir: Path, has_generate: bool) -> list[tuple[str, Any]]:
    from ..config.stages import EvalConfig

    if not isinstance(entries, list) or not entries:
        raise FactoryError(f"{path}: eval: expected a list of evaluations (name, model, benchmark, ...)")
    out, names = [], set()
    for i, entry in enumerate(entries):
        entry = dict(entry)
        name = str(entry.pop("name", f"eval{i + 1}"))
        _check_name(path, f"eval[{i}]", name)
        if name in names:
            raise FactoryError(f"{path}: eval[{i}]: the name {name!r} is used twice")
        names.add(name)
        entry.setdefault("label", name)
        if has_generate and str(entry.get("benchmark", "")).startswith("gym:"):  # held out of this run's own too
            runs = [str(r) for r in entry.get("exclude_runs") or []]
            entry["exclude_runs"] = runs + [str(run_dir)] * (str(run_dir) not in runs)
        out.append((name, build(EvalConfig, entry, where=f"{path} eval[{i}] ({name})")))
    for i, (name, e) in enumerate(out):
        if e.vs is not None and (e.vs == name or e.vs not in names):
            raise FactoryError(f"{path}: eval[{i}] ({name}): field 'vs': {e.vs!r} is not another eval of this "
                               f"stage (its evals: {', '.join(n for n, _ in out)})")
    return out


def resolve_refs(inst: StageInstance, p: Pipeline, prepare: bool = True) -> Any:
    """The instance's config with its model fields' references replaced by what they name (see the module's doc).
    prepare=False resolves without side effects (nothing converted or built: to plan and to check outputs)."""
    cfg = inst.config
    for dotted in STAGES[inst.kind].model_fields:
        cfg = _with(cfg, dotted, resolve_model_ref(_get(cfg, dotted), p, inst.name, prepare))
    return cfg


def resolve_model_ref(ref: str, p: Pipeline, at: str | None = None, prepare: bool = True) -> str:
    """`stage:NAME`, `teacher`, `student`, `student-base` -> what they mean for the instance `at` (default: the
    last one) in this pipeline. Anything else is itself."""
    if ref.startswith(STAGE_REF):
        target = p.instance(ref[len(STAGE_REF):])
        return str(STAGES[target.kind].trained_model(resolve_refs(target, p, prepare=False)))
    if ref not in MODEL_REFS:
        return ref
    at = at or p.instances[-1].name
    kind = "generate" if ref == "teacher" else "distill"
    source = p.before(at, kind) or (p.instance(at) if p.instance(at).kind == kind else None)
    if source is None:
        raise FactoryError(f"{p.path}: eval model {ref!r} needs a {kind} stage before it")
    if ref == "teacher":
        return source.config.all_teachers()[0].model  # several teachers: the first
    from train.students import final_dir, model_path, resolve_student

    distill = resolve_refs(source, p, prepare=False)
    if ref == "student-base":
        student = resolve_student(distill.student)
        return model_path(student) if prepare else student.model
    return str(final_dir(distill))


def model_refs(p: Pipeline, at: str, prepare: bool = True) -> Callable[[str], str]:
    """resolve_model_ref for one instance, as the stage table's Context carries it."""
    return functools.partial(resolve_model_ref, p=p, at=at, prepare=prepare)
