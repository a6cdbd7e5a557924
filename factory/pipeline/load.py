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
RUN_DIR/student/NAME and a named eval block to RUN_DIR/eval/NAME unless its block says otherwise. A block a
stage module expands (an eval block: one instance per eval, BLOCK.NAME, and BLOCK.compare) is addressed by its
name too: `--only eval` runs every instance of it.

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
from ..stages.base import default_output, model_fields, output_field, trained_model, trains
from ..stages.estimates import PlanAssumptions
from .registry import KINDS, STAGES

MODEL_REFS = ("teacher", "student", "student-base")
STAGE_REF = "stage:"


@dataclass
class StageInstance:
    name: str  # unique in the pipeline: the key of its state (BLOCK.ENTRY for an instance of an expanded block)
    kind: str  # a key of STAGES
    config: Any  # the kind's config model
    run_dir: Path
    block: str = ""  # the pipeline block it comes from (its config's key); "": its name
    entry: str | None = None  # its name inside an expanded block (an eval's name)

    def __post_init__(self) -> None:
        self.block = self.block or self.name


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
    def blocks(self) -> list[str]:
        return list(dict.fromkeys(i.block for i in self.instances))

    @property
    def configs(self) -> dict[str, Any]:
        """Instance name -> config."""
        return {i.name: i.config for i in self.instances}

    @property
    def evals(self) -> list[tuple[str, Any]]:
        """(the eval's name, its config) of every eval instance."""
        return [(i.entry or i.name, i.config) for i in self.instances if i.kind == "eval"]

    def named(self, name: str) -> list[StageInstance]:
        """The instance of this name, or every instance of the block of this name."""
        return [i for i in self.instances if i.name == name] or [i for i in self.instances if i.block == name]

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
        stage = STAGES[kind]
        where = f"{path} {name}" if name == kind else f"{path} {name} ({kind})"
        inst_dir = Path(own_dir) if own_dir else run_dir
        section = copy.deepcopy(doc.get(name))
        if hasattr(stage, "expand"):  # a block of several instances (an eval block)
            earlier = [i.kind for i in p.instances]
            for entry, entry_kind, config in stage.expand(name, section, inst_dir, earlier, where):
                p.instances.append(StageInstance(f"{name}.{entry}", entry_kind, config, inst_dir, name, entry))
            continue
        config = build(stage.Config, _defaults(name, stage, section or {}, inst_dir), where=where)
        p.instances.append(StageInstance(name, kind, config, inst_dir))
    for inst in p.instances:
        for dotted in model_fields(STAGES[inst.kind]):
            _check_stage_ref(p, inst.name, dotted, _get(inst.config, dotted))
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
    if target not in earlier or not trains(STAGES[earlier[target].kind]):
        trained = [n for n, i in earlier.items() if trains(STAGES[i.kind])] or ["none"]
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


def _defaults(name: str, stage: Any, section: Any, run_dir: Path) -> Any:
    """Every instance works in its run directory; a named training stage gets its own output folder."""
    if not isinstance(section, dict):
        raise FactoryError(f"{name}: expected a mapping of settings, got {type(section).__name__}")
    section.setdefault(output_field(stage), str(run_dir))
    own = default_output(stage, run_dir, name) if name != stage.KIND else None
    if own is not None:
        section.setdefault("output_dir", str(own))
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


def resolve_refs(inst: StageInstance, p: Pipeline, prepare: bool = True) -> Any:
    """The instance's config with its model fields' references replaced by what they name (see the module's doc).
    prepare=False resolves without side effects (nothing converted or built: to plan and to check outputs)."""
    cfg = inst.config
    for dotted in model_fields(STAGES[inst.kind]):
        cfg = _with(cfg, dotted, resolve_model_ref(_get(cfg, dotted), p, inst.name, prepare))
    return cfg


def resolve_model_ref(ref: str, p: Pipeline, at: str | None = None, prepare: bool = True) -> str:
    """`stage:NAME`, `teacher`, `student`, `student-base` -> what they mean for the instance `at` (default: the
    last one) in this pipeline. Anything else is itself."""
    if ref.startswith(STAGE_REF):
        target = p.instance(ref[len(STAGE_REF):])
        return str(trained_model(STAGES[target.kind], resolve_refs(target, p, prepare=False)))
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
    """resolve_model_ref for one instance."""
    return functools.partial(resolve_model_ref, p=p, at=at, prepare=prepare)
