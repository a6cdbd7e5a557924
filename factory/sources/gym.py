"""reasoning-gym tasks: procedurally generated problems with their own answer scorers, offline."""

from __future__ import annotations

import json

from ..config.stages import PromptsConfig
from ..core.errors import FactoryError
from ..storage.records import Prompt


def load_gym(task: str, cfg: PromptsConfig) -> list[Prompt]:
    import reasoning_gym

    try:
        ds = reasoning_gym.create_dataset(task, size=cfg.size, seed=cfg.seed, **cfg.gym_args)
    except Exception as e:
        raise FactoryError(f"gym:{task}: unknown or invalid reasoning-gym task ({e})") from None
    prompts = []
    for i, entry in enumerate(ds):
        # The filter re-creates the dataset from (task, size, seed, args) and scores with entry `index`.
        gym = {"task": task, "size": cfg.size, "seed": cfg.seed, "index": i, **({"args": cfg.gym_args}
                                                                               if cfg.gym_args else {})}
        meta = {"gym": gym,
                "entry_metadata": entry.get("metadata", {})}
        prompts.append(Prompt(source=f"gym:{task}", task=f"gym:{task}", problem=entry["question"],
                              reference_answer=None if entry.get("answer") is None else str(entry["answer"]),
                              metadata=json.dumps(meta, default=str)))
    return prompts
