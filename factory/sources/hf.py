"""Hugging Face datasets by name (`hf:AI-MO/NuminaMath-CoT`) or local path, through `datasets.load_dataset`."""

from __future__ import annotations

from ..config.stages import PromptsConfig
from ..core.errors import FactoryError
from ..storage.records import Prompt
from .files import row_to_prompt


def load_hf(name: str, cfg: PromptsConfig) -> list[tuple[str, Prompt]]:
    """Each row's prompt with where it came from (`hf:NAME row I`)."""
    import datasets

    try:
        if cfg.split == "all":  # every split, concatenated: what decontamination must check against
            splits = datasets.load_dataset(name, cfg.subset)
            ds = datasets.concatenate_datasets([splits[k] for k in sorted(splits)])
        else:
            ds = datasets.load_dataset(name, cfg.subset, split=cfg.split)
    except Exception as e:  # the library raises many types; the user needs the name and the reason
        raise FactoryError(f"hf:{name} (split {cfg.split!r}): could not load: {type(e).__name__}: {e}") from None
    if cfg.limit is not None:
        ds = ds.select(range(min(cfg.limit, len(ds))))
    missing = [c for c in (cfg.problem_field, cfg.answer_field) if c and c not in ds.column_names]
    if missing:
        raise FactoryError(f"hf:{name}: no column {missing[0]!r} (columns: {', '.join(ds.column_names)})")
    source = f"hf:{name}" + (f"/{cfg.subset}" if cfg.subset else "")
    return [(f"hf:{name} row {i}", row_to_prompt(row, cfg, f"hf:{name} row {i}", source)) for i, row in enumerate(ds)]
