"""`factory run PIPELINE.yaml`: a pipeline file (load.py), the stage kinds it can name (registry.py), the runner
that skips what is up to date (runner.py) and the dry-run plan (plan.py). The runner is not a stage: adding a
stage kind is one module under factory/stages/ and one entry in registry.py."""

from .load import Pipeline, StageInstance, load_pipeline, resolve_model_ref, resolve_refs
from .plan import dry_run
from .runner import check_flags, plan_stages, run

__all__ = ["Pipeline", "StageInstance", "check_flags", "dry_run", "load_pipeline", "plan_stages", "resolve_model_ref",
           "resolve_refs", "run"]
